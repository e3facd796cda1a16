"""Scale in and out under steady traffic through HAProxy: ansible/remove_node.yml takes an
app node out, then one ansible/add_node.yml run puts it back together with a new workers
host and a new database replica (README, "Adding and removing app nodes"). The two new hosts
are fresh containers, created as `make up` creates any and named in an extra inventory
file; add_node.yml's site.yml converges them with the rest of the stack.

Runs after every module but test_your_app (conftest.LAST_MODULES): the other checks count
the hosts of the stack's own inventory. The new workers host's workers stop at the end,
since test_your_app deploys other applications with that inventory, which does not name it;
the new containers go with the stack's (ansible/local_down.yml removes every container of
the stack's network).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import testinfra
import yaml
from conftest import (
    INVENTORY,
    LB_URL,
    Stream,
    current_release,
    get_host,
    host_vars,
    run_playbook,
    secrets_dir,
    server_states,
    skeleton_copy,
    steady_stream,
    superuser_sql,
    wait_for_job,
)

LB = INVENTORY.get_hosts("lb")[0]
APP_NODES = sorted(INVENTORY.get_hosts("app"))
NODE = APP_NODES[-1]
WORKER = "kit-workers-2"
REPLICA = "kit-db-3"
# Free addresses on the stack's network (inventories/local/hosts.yml numbers the groups).
EXTRA_INVENTORY = {
    "all": {
        "children": {
            "local": {
                "children": {
                    "workers": {"hosts": {WORKER: {"private_ip": "172.30.213.32"}}},
                    "db": {
                        "children": {
                            "db_replicas": {"hosts": {REPLICA: {"private_ip": "172.30.213.53"}}}
                        }
                    },
                }
            }
        }
    }
}
PRIMARY = INVENTORY.get_hosts("db_primary")[0]
OLD_WORKERS = sorted(INVENTORY.get_hosts("workers"))


def container(name: str) -> testinfra.host.Host:
    """A host the stack's inventory does not name: its container, directly."""
    return testinfra.get_host(f"docker://{name}")


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


@dataclass
class Scaled:
    removed: subprocess.CompletedProcess[str]
    remove_stream: Stream
    # What the lb, the node and HAProxy's configuration showed between the two runs.
    states_between: dict[str, str]
    instances_between: list[str]
    config_between: str
    added: subprocess.CompletedProcess[str]
    add_stream: Stream


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaled]:
    """remove_node.yml, then add_node.yml for the same node over an inventory that also
    names the new workers host and replica, each under steady traffic."""
    with steady_stream() as remove_stream:
        removed = run_playbook("remove_node.yml", "-e", f"remove_node={NODE}")
    states_between = server_states()
    instances_between = running_instances(NODE)
    config_between = get_host(LB).file("/etc/haproxy/haproxy.cfg").content_string
    # The local environment reads its secrets beside the file that names a host
    # (inventories/local/group_vars/all/secrets.yml), as for a host added to hosts.yml.
    directory = tmp_path_factory.mktemp("inventory")
    (directory / ".secrets").symlink_to(secrets_dir())
    extra = directory / "scale_out.yml"
    extra.write_text(yaml.safe_dump(EXTRA_INVENTORY))
    created = run_playbook("local_up.yml", "-i", str(extra))
    assert created.returncode == 0, (created.stdout + created.stderr)[-4000:]
    with steady_stream() as add_stream:
        added = run_playbook("add_node.yml", "-i", str(extra), "-e", f"add_node={NODE}")
    yield Scaled(
        removed, remove_stream, states_between, instances_between, config_between,
        added, add_stream,
    )  # fmt: skip
    container(WORKER).run("systemctl stop 'rq-worker@*.service'")


def test_remove_node_under_traffic_fails_no_request(scaled: Scaled) -> None:
    output = scaled.removed.stdout + scaled.removed.stderr
    print(
        f"remove_node: {dict(scaled.remove_stream.outcomes)} in {scaled.remove_stream.seconds:.1f}s"
    )
    assert scaled.removed.returncode == 0, output[-4000:]
    assert set(scaled.remove_stream.outcomes) == {"ok"}, scaled.remove_stream.outcomes
    states = scaled.states_between
    assert states, "no server left"
    assert not [name for name in states if name.startswith(f"{NODE}-")], states
    assert set(states.values()) == {"UP"}, states
    assert scaled.instances_between == []
    assert f"server {NODE}-" not in scaled.config_between


def test_add_node_with_a_new_workers_host_and_replica_under_traffic_fails_no_request(
    scaled: Scaled,
) -> None:
    output = scaled.added.stdout + scaled.added.stderr
    print(f"add_node: {dict(scaled.add_stream.outcomes)} in {scaled.add_stream.seconds:.1f}s")
    assert scaled.added.returncode == 0, output[-4000:]
    assert set(scaled.add_stream.outcomes) == {"ok"}, scaled.add_stream.outcomes
    recap = scaled.added.stdout[scaled.added.stdout.rindex("PLAY RECAP") :]
    for name in (WORKER, REPLICA):
        assert f"{name} " in recap
    states = server_states()
    ours = {name: state for name, state in states.items() if name.startswith(f"{NODE}-")}
    assert len(ours) == len(running_instances(NODE)) > 0, states
    assert set(states.values()) == {"UP"}, states
    assert Path(get_host(NODE).check_output("readlink /srv/kit-app/current")).name == (
        current_release(APP_NODES[0])
    )


def test_the_new_replica_streams_a_row_written_on_the_primary(
    scaled: Scaled,
) -> None:
    assert scaled.added.returncode == 0
    primary, replica = get_host(PRIMARY), container(REPLICA)
    streaming = superuser_sql(
        primary, "SELECT state FROM pg_stat_replication WHERE application_name = 'kit-db-3'"
    )
    assert streaming == "streaming"
    slot = superuser_sql(
        primary, "SELECT active FROM pg_replication_slots WHERE slot_name = 'kit_db_3'"
    )
    assert slot == "t"
    name = f"scale-out-{uuid.uuid4()}"
    superuser_sql(primary, f"INSERT INTO items (name) VALUES ('{name}')")
    deadline = time.monotonic() + 10
    query = f"SELECT count(*) FROM items WHERE name = '{name}'"
    while superuser_sql(replica, query) != "1" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert superuser_sql(replica, query) == "1"


def test_the_new_replica_takes_read_only_connections_from_pgbouncer(
    scaled: Scaled,
) -> None:
    """Each node's router sends kit_ro to the healthy replicas: the new one is among them,
    checked UP through its Patroni API, on the old nodes and the new one alike."""
    assert scaled.added.returncode == 0
    bouncers = sorted(INVENTORY.get_hosts("app")) + OLD_WORKERS + [WORKER]
    for name in bouncers:
        stat = container(name).check_output(
            "echo 'show stat' | socat stdio /run/kit-pgrouter/admin.sock"
        )
        rows = {
            line.split(",")[1]: line.split(",")[17]
            for line in stat.splitlines()
            if line.startswith("kit_replicas,")
        }
        assert rows.get(REPLICA) == "UP", (name, rows)


def test_the_new_workers_host_takes_jobs(scaled: Scaled) -> None:
    """With the old workers stopped, a job enqueued through HAProxy runs on the new host."""
    assert scaled.added.returncode == 0
    # The units themselves, not their target: systemctl waits for each worker's warm
    # shutdown, so none is still taking a job from the queue when the test enqueues one.
    for name in OLD_WORKERS:
        get_host(name).check_output("systemctl stop 'rq-worker@*.service'")
    try:
        job_id = requests.post(
            f"{LB_URL}/jobs", params={"label": "scale-out", "seconds": "0"}, timeout=10
        ).json()["id"]
        body = wait_for_job(job_id)
        assert body["status"] == "finished", body
        assert body["result"]["worker_host"] == container(WORKER).check_output("hostname")
    finally:
        for name in OLD_WORKERS:
            get_host(name).check_output("systemctl start rq-worker.target")


def test_prometheus_scrapes_the_new_hosts(scaled: Scaled) -> None:
    """node_exporter on both, PostgreSQL's exporter on the replica: scraped and up."""
    assert scaled.added.returncode == 0
    monitoring = INVENTORY.get_hosts("monitoring")[0]
    prometheus = str(host_vars(monitoring)["local_stack_prometheus_url"])
    expected = {(WORKER, "node"), (REPLICA, "node"), (REPLICA, "postgres")}
    up: set[tuple[str, str]] = set()
    deadline = time.monotonic() + 60
    while not expected <= up and time.monotonic() < deadline:
        time.sleep(1)
        answer = requests.get(f"{prometheus}/api/v1/targets?state=active", timeout=10)
        up = {
            (target["labels"]["host"], target["labels"]["job"])
            for target in answer.json()["data"]["activeTargets"]
            if target["health"] == "up"
        }
    assert expected <= up, sorted(up)
