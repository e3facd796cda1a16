"""State outside the processes: sessions and the cache in Redis, jobs through RQ workers."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import requests
import testinfra
from conftest import INVENTORY, get_host, host_vars, secret

LB_URL = str(host_vars(INVENTORY.get_hosts("lb")[0])["local_stack_lb_url"])
APP_NODES = sorted(INVENTORY.get_hosts("app"))
REDIS = INVENTORY.get_hosts("redis")[0]
WORKERS = INVENTORY.get_hosts("workers")[0]
SESSIONS, QUEUES = 6379, 6380


@pytest.fixture(scope="module")
def redis_host() -> testinfra.host.Host:
    return get_host(REDIS)


@pytest.fixture(scope="module")
def workers() -> testinfra.host.Host:
    return get_host(WORKERS)


def app_env(name: str) -> str:
    """A value of the application's environment file, as the app role rendered it."""
    env = get_host(APP_NODES[0]).check_output("cat /etc/kit-app/env")
    return next(line.split("=", 1)[1] for line in env.splitlines() if line.startswith(name + "="))


def admin(redis_host, port: int, command: str) -> str:
    """redis-cli as the operators' user."""
    password = secret("redis_admin_password")
    return redis_host.check_output(
        f"REDISCLI_AUTH='{password}' redis-cli --no-auth-warning --user admin -p {port} {command}"
    )


def stat(redis_host, port: int, field: str) -> int:
    for line in admin(redis_host, port, "INFO stats").splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    raise AssertionError(f"INFO stats has no {field}")


def wait_for_job(job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = requests.get(f"{LB_URL}/jobs/{job_id}", timeout=10).json()
        if body["status"] in {"finished", "failed"} or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def test_session_counter_keeps_counting_across_instances_and_nodes() -> None:
    client = requests.Session()
    served = set()
    for expected in range(1, 13):
        body = client.get(f"{LB_URL}/session", timeout=10).json()
        assert body["count"] == expected, body
        served.add((body["host"], body["instance"]))
    # Round-robin sent the one session to every instance of every node.
    assert {host for host, _ in served} == set(APP_NODES)
    assert len(served) == 2 * len(APP_NODES)


def test_cache_serves_the_second_request_from_redis_whichever_instance() -> None:
    n = 1000 + uuid.uuid4().int % 5000
    first = requests.get(f"{LB_URL}/cache/fibonacci/{n}", timeout=10).json()
    second = requests.get(f"{LB_URL}/cache/fibonacci/{n}", timeout=10).json()
    assert first["cached"] is False
    assert second["cached"] is True
    assert second["value"] == first["value"]


def test_job_enqueued_through_the_lb_runs_on_the_workers_host() -> None:
    label = f"job-{uuid.uuid4()}"
    response = requests.post(f"{LB_URL}/jobs", params={"label": label}, timeout=10)
    assert response.status_code == 202
    body = wait_for_job(response.json()["id"])
    assert body["status"] == "finished", body
    assert body["result"]["label"] == label
    assert body["result"]["worker_host"] == WORKERS


def test_waiting_jobs_survive_a_restart_of_the_queues_instance(redis_host, workers) -> None:
    workers.check_output("systemctl stop rq-worker.target 'rq-worker@*.service'")
    try:
        ids = [
            requests.post(f"{LB_URL}/jobs", params={"label": f"w{n}"}, timeout=10).json()["id"]
            for n in range(20)
        ]
        redis_host.check_output("systemctl restart redis-server@queues.service")
        time.sleep(1)
    finally:
        workers.check_output("systemctl start rq-worker.target")
    results = [wait_for_job(job_id) for job_id in ids]
    assert [r["status"] for r in results] == ["finished"] * 20
    assert [r["result"]["label"] for r in results] == [f"w{n}" for n in range(20)]


def test_a_stopped_worker_finishes_the_job_in_hand(workers) -> None:
    job_id = requests.post(
        f"{LB_URL}/jobs", params={"label": "slow", "seconds": "4"}, timeout=10
    ).json()["id"]
    deadline = time.monotonic() + 20
    while requests.get(f"{LB_URL}/jobs/{job_id}", timeout=10).json()["status"] != "started":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    try:
        # Returns when every worker has exited: the one with the job after finishing it.
        workers.check_output("systemctl stop rq-worker.target 'rq-worker@*.service'")
        assert requests.get(f"{LB_URL}/jobs/{job_id}", timeout=10).json()["status"] == "finished"
    finally:
        workers.check_output("systemctl start rq-worker.target")


def test_sessions_evict_under_memory_pressure_while_queues_refuse_writes(redis_host) -> None:
    url = {SESSIONS: app_env("KIT_REDIS_SESSIONS_URL"), QUEUES: app_env("KIT_REDIS_QUEUES_URL")}
    outcome = {}
    for port in (SESSIONS, QUEUES):
        limit = admin(redis_host, port, "CONFIG GET maxmemory").splitlines()[1]
        evicted_before = stat(redis_host, port, "evicted_keys")
        admin(redis_host, port, "CONFIG SET maxmemory 4mb")
        try:
            # 3,000 writes of 4 KiB (12 MiB), each its own command, as the application.
            out = redis_host.check_output(
                f"seq 1 3000 | sed 's/.*/SET kit:pressure:& {'x' * 4096}/' "
                f"| redis-cli --no-auth-warning -u '{url[port]}' 2>&1 | sort | uniq -c"
            )
            outcome[port] = (out, stat(redis_host, port, "evicted_keys") - evicted_before)
        finally:
            admin(redis_host, port, f"CONFIG SET maxmemory {limit}")
            admin(
                redis_host,
                port,
                "EVAL \"for _, k in ipairs(redis.call('KEYS', "
                "'kit:pressure:*')) do redis.call('DEL', k) end\" 0",
            )
    sessions_out, sessions_evicted = outcome[SESSIONS]
    queues_out, queues_evicted = outcome[QUEUES]
    assert "OOM" not in sessions_out
    assert sessions_evicted > 0
    assert "OOM command not allowed" in queues_out
    assert queues_evicted == 0


def test_the_app_user_cannot_flush_or_reconfigure_redis(redis_host) -> None:
    url = app_env("KIT_REDIS_SESSIONS_URL")
    for command in ("FLUSHALL", "CONFIG GET maxmemory", "CONFIG SET maxmemory 1mb"):
        out = redis_host.check_output(f"redis-cli --no-auth-warning -u '{url}' {command}")
        assert "NOPERM" in out, (command, out)
