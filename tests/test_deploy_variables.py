"""The rolling deploy's own variables (ansible/deploy_checks.yml, imported by deploy.yml and
site.yml) are typed, checked before any host is touched, and documented."""

from __future__ import annotations

import pytest
import yaml
from conftest import ROOT, run_ansible


def deploy_spec() -> dict[str, dict[str, str]]:
    plays = yaml.safe_load((ROOT / "ansible" / "deploy_checks.yml").read_text())
    check = next(play for play in plays if play.get("name") == "Check the deploy's own variables")
    spec: dict[str, dict[str, str]] = check["vars"]["__deploy_argument_spec"]
    return spec


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("deploy_serial=two", "argument 'deploy_serial' is of type str"),
        ("deploy_serial=0", "deploy_serial (found 0)"),
        ("deploy_drain_timeout=soon", "argument 'deploy_drain_timeout' is of type str"),
        ("deploy_drain_timeout=0", "deploy_drain_timeout (found 0) and deploy_ready_timeout"),
        ("deploy_ready_timeout=0", "deploy_ready_timeout (found 0) must each be at least 1"),
        # The local inventory has two app nodes: a batch of two would drain them both.
        ("deploy_serial=2", "deploy_serial is 2, and the app group has 2 nodes"),
    ],
)
def test_a_bad_deploy_variable_stops_the_deploy_before_any_host_is_touched(
    extra: str, message: str
) -> None:
    # Every host points at a container that does not exist: should the check ever let the
    # deploy through, it fails to connect instead of touching a running local stack.
    result = run_ansible("ansible-playbook", "ansible/deploy.yml", "-e", extra,
                         "-e", "ansible_host=kit-no-such-container")  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert message in output, output
    assert "Gathering Facts" not in output
    assert "PLAY [Build the release" not in output


def test_site_yml_refuses_a_batch_that_drains_every_node_before_any_host_is_touched() -> None:
    """site.yml rolls a changed release over the app nodes with the same deploy_serial."""
    result = run_ansible("ansible-playbook", "ansible/site.yml", "-e", "deploy_serial=2",
                         "-e", "ansible_host=kit-no-such-container")  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "deploy_serial is 2, and the app group has 2 nodes" in output, output
    assert "Gathering Facts" not in output


def test_every_deploy_variable_is_typed_and_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, option in deploy_spec().items():
        assert option.get("type"), name
        assert option.get("description"), name
        assert f"| `{name}` |" in readme, f"README's deploy table lacks {name}"


def test_the_defaults_pass_the_deploy_checks() -> None:
    """No deploy variable given: every check renders and passes, and the deploy goes on to
    its next play (where it fails to reach the hosts, which do not exist)."""
    result = run_ansible("ansible-playbook", "ansible/deploy.yml",
                         "-e", "ansible_host=kit-no-such-container")  # fmt: skip
    output = result.stdout + result.stderr
    assert "is undefined" not in output, output
    assert "PLAY [Publish every layer's endpoints for this run]" in output, output
