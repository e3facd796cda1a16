"""RQ workers from the app's release, taking jobs from the queues Redis instance."""

from __future__ import annotations

import json
import time

WORKERS = ("rq-worker@1.service", "rq-worker@2.service")
PYTHON = "/srv/kit-app/current/venv/bin/python"


def rq(host, code: str) -> str:
    """Run Python with the application's release and environment, as the workers have them."""
    script = "from redis import Redis; from rq import Queue, Retry; from rq.job import Job; " + (
        "import os; r = Redis.from_url(os.environ['KIT_REDIS_QUEUES_URL']); " + code
    )
    return host.check_output(
        f"set -a; . /etc/kit-app/env; set +a; {PYTHON} -c {json.dumps(script)}"
    ).strip()


def enqueue(host, call: str) -> str:
    return rq(host, f"print(Queue('default', connection=r).enqueue({call}).id)")


def status(host, job_id: str) -> str:
    return rq(host, f"print(Job.fetch('{job_id}', connection=r).get_status().value)")


def wait_for(host, job_id: str, wanted: set[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        state = status(host, job_id)
        if state in wanted or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def test_every_worker_runs_as_the_app_user(host) -> None:
    for unit in WORKERS:
        assert host.service(unit).is_running
        assert host.service(unit).is_enabled
        pid = host.check_output(f"systemctl show --value -p MainPID {unit}")
        assert host.check_output(f"ps -o user= -p {pid}") == "kit-app"


def test_a_job_runs_and_its_result_is_kept(host) -> None:
    job_id = enqueue(host, "'kit_app.jobs.report', 'hello'")
    assert wait_for(host, job_id, {"finished", "failed"}) == "finished"
    fetch = f"Job.fetch('{job_id}', connection=r)"
    result = json.loads(rq(host, f"import json; print(json.dumps({fetch}.return_value()))"))
    assert result["label"] == "hello"
    assert result["worker_host"] == "kit-molecule-rq-worker"


def test_a_stopping_worker_finishes_the_job_in_hand(host) -> None:
    host.check_output("systemctl stop rq-worker@2.service")
    try:
        job_id = enqueue(host, "'kit_app.jobs.report', 'slow', 4, job_timeout=60")
        assert wait_for(host, job_id, {"started", "finished"}, timeout=20) == "started"
        host.check_output("systemctl stop rq-worker@1.service")  # returns once the job is done
        assert status(host, job_id) == "finished"
    finally:
        host.check_output("systemctl start rq-worker@1.service rq-worker@2.service")


def test_a_failing_job_is_retried_then_kept_in_the_failed_registry(host) -> None:
    job_id = enqueue(host, "'kit_app.jobs.fail', 'boom', retry=Retry(max=1, interval=1)")
    assert wait_for(host, job_id, {"failed"}, timeout=60) == "failed"
    registry = rq(host, "print(Queue('default', connection=r).failed_job_registry.get_job_ids())")
    assert job_id in registry
    info = host.check_output(
        "set -a; . /etc/kit-app/env; set +a; "
        '/srv/kit-app/current/venv/bin/rq info --url "$KIT_REDIS_QUEUES_URL" default'
    )
    assert "default" in info
