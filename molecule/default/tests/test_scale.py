"""Scale in and out: ansible/remove_node.yml and ansible/add_node.yml on the full topology,
under steady traffic through HAProxy."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import (
    INVENTORY,
    current_release,
    get_host,
    run_playbook,
    server_states,
    skeleton_copy,
    steady_stream,
)

LB = INVENTORY.get_hosts("lb")[0]
APP_NODES = sorted(INVENTORY.get_hosts("app"))
NODE = APP_NODES[-1]


def running_instances(name: str) -> list[str]:
    return (
        get_host(name)
        .check_output(
            "systemctl list-units --state=running --plain --no-legend 'gunicorn@*.service'"
        )
        .splitlines()
    )


def test_remove_node_refuses_a_host_that_is_not_an_app_node() -> None:
    before = server_states()
    db = INVENTORY.get_hosts("db")[0]
    result = run_playbook("remove_node.yml", "-e", f"remove_node={db}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "remove_node must name one host of the app group" in output, output[-3000:]
    assert server_states() == before


def test_add_node_refuses_a_release_the_fleet_does_not_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    source = skeleton_copy(tmp_path_factory.mktemp("other"), version="98.0.0")
    before = {name: current_release(name) for name in APP_NODES}
    result = run_playbook(
        "add_node.yml", "-e", f"add_node={NODE}", "-e", f"app_source_dir={source}"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the new node would run another release than the others" in output, output[-3000:]
    assert {name: current_release(name) for name in APP_NODES} == before


def test_remove_then_add_a_node_under_traffic_fails_no_request() -> None:
    with steady_stream() as stream:
        removed = run_playbook("remove_node.yml", "-e", f"remove_node={NODE}")
    output = removed.stdout + removed.stderr
    print(f"remove_node: {dict(stream.outcomes)} in {stream.seconds:.1f}s")
    assert removed.returncode == 0, output[-4000:]
    assert set(stream.outcomes) == {"ok"}, stream.outcomes
    states = server_states()
    assert states, "no server left"
    assert not [name for name in states if name.startswith(f"{NODE}-")], states
    assert set(states.values()) == {"UP"}, states
    assert running_instances(NODE) == []
    config = get_host(LB).file("/etc/haproxy/haproxy.cfg").content_string
    assert f"server {NODE}-" not in config

    with steady_stream() as stream:
        added = run_playbook("add_node.yml", "-e", f"add_node={NODE}")
    output = added.stdout + added.stderr
    print(f"add_node: {dict(stream.outcomes)} in {stream.seconds:.1f}s")
    assert added.returncode == 0, output[-4000:]
    assert set(stream.outcomes) == {"ok"}, stream.outcomes
    states = server_states()
    ours = {name: state for name, state in states.items() if name.startswith(f"{NODE}-")}
    assert len(ours) == len(running_instances(NODE)) > 0, states
    assert set(states.values()) == {"UP"}, states
    assert Path(get_host(NODE).check_output("readlink /srv/kit-app/current")).name == (
        current_release(APP_NODES[0])
    )
