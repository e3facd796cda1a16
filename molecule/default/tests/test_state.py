"""State outside the processes: sessions and the cache in Redis, jobs through RQ workers, each
client with only the Redis rights it uses."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import testinfra
from conftest import INVENTORY, get_host, host_vars, secret, wait_for_job

LB_URL = str(host_vars(INVENTORY.get_hosts("lb")[0])["local_stack_lb_url"])
APP_NODES = sorted(INVENTORY.get_hosts("app"))
REDIS = INVENTORY.get_hosts("redis")[0]
WORKERS = INVENTORY.get_hosts("workers")[0]
SESSIONS, CACHE, QUEUES = 6379, 6381, 6380
# The kit's CA on every host (the pki role).
CA = "/etc/ssl/kit/ca.crt"


@pytest.fixture(scope="module")
def redis_host() -> testinfra.host.Host:
    return get_host(REDIS)


@pytest.fixture(scope="module")
def workers() -> testinfra.host.Host:
    return get_host(WORKERS)


def env_file(host: str) -> dict[str, str]:
    """The application's environment file on a host, as the app role rendered it."""
    env = get_host(host).check_output("cat /etc/kit-app/env")
    return dict(line.split("=", 1) for line in env.splitlines() if "=" in line)


def app_env(name: str) -> str:
    """A value of the web tier's environment."""
    return env_file(APP_NODES[0])[name]


def redis_address() -> str:
    """The address the Redis host's certificate names, as the application reaches it."""
    return str(urlsplit(app_env("KIT_REDIS_SESSIONS_URL")).hostname)


def cli(url: str) -> str:
    """redis-cli for an application URL: TLS (rediss://) with the CA the URL names, the
    query (redis-py's options) left out of the URL redis-cli reads."""
    parts = urlsplit(url)
    ca = parse_qs(parts.query)["ssl_ca_certs"][0]
    return f"redis-cli --no-auth-warning --cacert {ca} -u '{parts._replace(query='').geturl()}'"


def admin(redis_host, port: int, command: str) -> str:
    """redis-cli as the operators' user."""
    password = secret("redis_admin_password")
    return redis_host.check_output(
        f"REDISCLI_AUTH='{password}' redis-cli --no-auth-warning --tls --cacert {CA}"
        f" -h {redis_address()} --user admin -p {port} {command}"
    )


def stat(redis_host, port: int, field: str) -> int:
    for line in admin(redis_host, port, "INFO stats").splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    raise AssertionError(f"INFO stats has no {field}")


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


def fill(redis_host, port: int, url: str, prefix: str) -> tuple[str, int]:
    """12 MiB written to an instance cut to 4 MiB, as the application writes (3,000 commands
    of 4 KiB): what the server answered, and how many keys it evicted. The instance gets its
    bound back and loses the keys written, whatever happens."""
    limit = admin(redis_host, port, "CONFIG GET maxmemory").splitlines()[1]
    evicted_before = stat(redis_host, port, "evicted_keys")
    admin(redis_host, port, "CONFIG SET maxmemory 4mb")
    try:
        out = redis_host.check_output(
            f"seq 1 3000 | sed 's/.*/SET {prefix}& {'x' * 4096}/' "
            f"| {cli(url)} 2>&1 | sort | uniq -c"
        )
        return out, stat(redis_host, port, "evicted_keys") - evicted_before
    finally:
        admin(redis_host, port, f"CONFIG SET maxmemory {limit}")
        admin(
            redis_host,
            port,
            f"EVAL \"for _, k in ipairs(redis.call('KEYS', '{prefix}*')) do "
            "redis.call('DEL', k) end\" 0",
        )


def test_cache_pressure_evicts_cache_keys_and_never_logs_a_user_out(redis_host) -> None:
    client = requests.Session()
    assert client.get(f"{LB_URL}/session", timeout=10).json()["count"] == 1
    cache_out, cache_evicted = fill(redis_host, CACHE, app_env("KIT_REDIS_CACHE_URL"), "kit:fill:")
    assert "OOM" not in cache_out
    assert cache_evicted > 0
    # The session lives on its own instance: the cache's pressure never reached it.
    assert client.get(f"{LB_URL}/session", timeout=10).json()["count"] == 2


def test_a_full_queues_instance_refuses_writes_and_evicts_nothing(redis_host) -> None:
    out, evicted = fill(redis_host, QUEUES, app_env("KIT_REDIS_QUEUES_URL"), "rq:fill:")
    assert "OOM command not allowed" in out
    assert evicted == 0


def test_a_nearly_full_queues_instance_refuses_new_jobs_cleanly(redis_host) -> None:
    """Past 90 % of maxmemory the app answers 503 with Retry-After, before noeviction
    fails every write (the workers' own included)."""
    limit = admin(redis_host, QUEUES, "CONFIG GET maxmemory").splitlines()[1]
    used = int(
        next(line for line in admin(redis_host, QUEUES, "INFO memory").splitlines()
             if line.startswith("used_memory:")).split(":")[1]
    )  # fmt: skip
    admin(redis_host, QUEUES, f"CONFIG SET maxmemory {int(used / 0.95)}")
    try:
        refused = requests.post(f"{LB_URL}/jobs", params={"label": "full"}, timeout=10)
    finally:
        admin(redis_host, QUEUES, f"CONFIG SET maxmemory {limit}")
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "30"
    assert "nearly full" in refused.json()["error"]
    accepted = requests.post(f"{LB_URL}/jobs", params={"label": "room"}, timeout=10)
    assert accepted.status_code == 202
    assert wait_for_job(accepted.json()["id"])["status"] == "finished"


def test_the_workers_have_their_own_redis_user_and_no_sessions() -> None:
    web, worker = env_file(APP_NODES[0]), env_file(WORKERS)
    assert {"KIT_REDIS_SESSIONS_URL", "KIT_REDIS_CACHE_URL"} <= set(web)
    assert "KIT_REDIS_SESSIONS_URL" not in worker
    assert "KIT_REDIS_CACHE_URL" not in worker
    assert urlsplit(web["KIT_REDIS_QUEUES_URL"]).username == "app"
    assert urlsplit(worker["KIT_REDIS_QUEUES_URL"]).username == "worker"


def test_a_worker_password_opens_no_session(redis_host) -> None:
    """A worker host's credentials, tried on the sessions instance: refused."""
    queues = urlsplit(env_file(WORKERS)["KIT_REDIS_QUEUES_URL"])
    url = queues._replace(netloc=f"{queues.netloc.rsplit(':', 1)[0]}:{SESSIONS}").geturl()
    out = redis_host.run(f"{cli(url)} GET kit:session:x")
    assert "WRONGPASS" in out.stdout + out.stderr or "NOAUTH" in out.stdout, out


def test_everything_the_app_and_workers_do_is_within_their_acl(redis_host, workers) -> None:
    """With the ACL log emptied: a session, the cache, a job enqueued through the lb and run
    by a worker that has just started (registration, scheduler, pub/sub) and its result read
    back. Redis logs every command its ACL refused: none."""
    for port in (SESSIONS, CACHE, QUEUES):
        admin(redis_host, port, "ACL LOG RESET")
    workers.check_output("systemctl restart rq-worker.target 'rq-worker@*.service'")
    client = requests.Session()
    assert client.get(f"{LB_URL}/session", timeout=10).status_code == 200
    assert client.get(f"{LB_URL}/cache/fibonacci/321", timeout=10).status_code == 200
    job = requests.post(f"{LB_URL}/jobs", params={"label": "acl", "seconds": "1"}, timeout=10)
    assert wait_for_job(job.json()["id"])["status"] == "finished"
    time.sleep(2)  # the workers' heartbeats and the scheduler's lock after the job
    denied = {port: admin(redis_host, port, "ACL LOG") for port in (SESSIONS, CACHE, QUEUES)}
    assert denied == {SESSIONS: "", CACHE: "", QUEUES: ""}


def test_the_app_user_cannot_flush_or_reconfigure_redis(redis_host) -> None:
    url = app_env("KIT_REDIS_SESSIONS_URL")
    for command in ("FLUSHALL", "CONFIG GET maxmemory", "CONFIG SET maxmemory 1mb"):
        out = redis_host.check_output(f"{cli(url)} {command}")
        assert "NOPERM" in out, (command, out)


def test_every_instance_serves_tls_only_with_a_certificate_from_the_kit_ca() -> None:
    """From an app node: each instance's certificate verifies against the kit's CA for the
    address the application uses, a plain-text client gets no answer, and a client that
    trusts another CA refuses the server."""
    node = get_host(APP_NODES[0])
    address = redis_address()
    node.check_output(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1"
        " -subj /CN=foreign-ca -keyout /tmp/foreign-ca.key -out /tmp/foreign-ca.crt 2>/dev/null"
    )
    for port in (SESSIONS, CACHE, QUEUES):
        handshake = f"openssl s_client -connect {address}:{port} -verify_return_error -brief"
        verified = node.run(f"{handshake} -CAfile {CA} -verify_ip {address} </dev/null")
        assert verified.rc == 0, verified.stderr
        assert "Verification: OK" in verified.stderr
        foreign = node.run(f"{handshake} -CAfile /tmp/foreign-ca.crt </dev/null")
        assert foreign.rc != 0
        assert "verify" in foreign.stderr.lower()
        plain = node.run(
            f"timeout 5 bash -c 'exec 3<>/dev/tcp/{address}/{port};"
            ' printf "PING\\r\\n" >&3; head -c 64 <&3\''
        )
        assert "PONG" not in plain.stdout
    for name in ("KIT_REDIS_SESSIONS_URL", "KIT_REDIS_CACHE_URL", "KIT_REDIS_QUEUES_URL"):
        assert urlsplit(app_env(name)).scheme == "rediss"
