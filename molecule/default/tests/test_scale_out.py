"""Scale out by inventory plus site.yml (README, "Adding and removing app nodes"): a new
workers host and a new database replica, each a fresh container, put in the inventory and
converged with the rest of the stack by one site.yml run.

Run after every module but test_your_app (conftest.LAST_MODULES): the other checks count the
hosts of the stack's own inventory. The new workers host's workers stop at the end, since
test_your_app deploys other applications with that inventory, which does not name it; its
containers go with the stack's (ansible/local_down.yml removes every container of the
stack's network).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
import testinfra
import yaml
from conftest import (
    INVENTORY,
    LB_URL,
    get_host,
    host_vars,
    run_playbook,
    secrets_dir,
    server_states,
    superuser_sql,
    wait_for_job,
)

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


@pytest.fixture(scope="module")
def scaled_out(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[subprocess.CompletedProcess[str]]:
    """The two hosts' containers created as `make up` creates any (ansible/local_up.yml),
    then site.yml over the inventory that names them."""
    # The local environment reads its secrets beside the file that names a host
    # (inventories/local/group_vars/all/secrets.yml), as for a host added to hosts.yml.
    directory = tmp_path_factory.mktemp("inventory")
    (directory / ".secrets").symlink_to(secrets_dir())
    extra = directory / "scale_out.yml"
    extra.write_text(yaml.safe_dump(EXTRA_INVENTORY))
    created = run_playbook("local_up.yml", "-i", str(extra))
    assert created.returncode == 0, (created.stdout + created.stderr)[-4000:]
    result = run_playbook("site.yml", "-i", str(extra))
    yield result
    container(WORKER).run("systemctl stop 'rq-worker@*.service'")


def test_site_yml_converges_the_new_hosts_with_the_stack(
    scaled_out: subprocess.CompletedProcess[str],
) -> None:
    assert scaled_out.returncode == 0, (scaled_out.stdout + scaled_out.stderr)[-4000:]
    recap = scaled_out.stdout[scaled_out.stdout.rindex("PLAY RECAP") :]
    for name in (WORKER, REPLICA):
        assert f"{name} " in recap
    assert set(server_states().values()) == {"UP"}, server_states()


def test_the_new_replica_streams_a_row_written_on_the_primary(
    scaled_out: subprocess.CompletedProcess[str],
) -> None:
    assert scaled_out.returncode == 0
    primary, replica = get_host(PRIMARY), container(REPLICA)
    streaming = superuser_sql(
        primary, "SELECT state FROM pg_stat_replication WHERE application_name = 'kit_db_3'"
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
    scaled_out: subprocess.CompletedProcess[str],
) -> None:
    """Each node's PgBouncer spreads kit_ro over the replicas: the new one is among them."""
    assert scaled_out.returncode == 0
    bouncers = sorted(INVENTORY.get_hosts("app")) + OLD_WORKERS + [WORKER]
    targets = set()
    for name in bouncers:
        host = container(name)
        rows = host.check_output(
            "runuser -u postgres -- psql -XAtq -p 6432 -d pgbouncer -c 'SHOW DATABASES'"
        )
        targets |= {line.split("|")[1] for line in rows.splitlines() if line.startswith("kit_ro|")}
    assert "172.30.213.53" in targets, targets


def test_the_new_workers_host_takes_jobs(scaled_out: subprocess.CompletedProcess[str]) -> None:
    """With the old workers stopped, a job enqueued through HAProxy runs on the new host."""
    assert scaled_out.returncode == 0
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


def test_prometheus_scrapes_the_new_hosts(scaled_out: subprocess.CompletedProcess[str]) -> None:
    """node_exporter on both, PostgreSQL's exporter on the replica: scraped and up."""
    assert scaled_out.returncode == 0
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
