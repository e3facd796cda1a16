"""Bring your own application: applications nobody here wrote, deployed over the converged
stack with inventory variables only (the app contract, roles/app/README.md).

- A release that fails its health check in site.yml: every node goes back to the release
  it ran, none is left on two.
- httpbin from PyPI (examples/httpbin/vars.yml): no project of ours, served through HAProxy
  on its own health path, plain `rq worker` on the workers.
- A Django project (examples/django): the admin login through HAProxy on sessions shared by
  both app nodes, a row written and read back from a replica, a job run by the workers.

Run after every other module (conftest.LAST_MODULES): it leaves the stack on Django.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import INVENTORY, get_host, host_vars, run_playbook

ROOT = Path(__file__).resolve().parents[3]
LB = INVENTORY.get_hosts("lb")[0]
LB_URL = str(host_vars(LB)["local_stack_lb_url"])
APP_NODES = sorted(INVENTORY.get_hosts("app"))
WORKERS = sorted(INVENTORY.get_hosts("workers"))
PROMETHEUS_URL = str(host_vars(INVENTORY.get_hosts("monitoring")[0])["local_stack_prometheus_url"])
HTTPBIN = ROOT / "examples" / "httpbin" / "vars.yml"
DJANGO = ROOT / "examples" / "django" / "vars.yml"
# The layers an application lives in: its nodes, its workers, the lb's health check.
TAGS = "app,rq_worker,haproxy"
# Another application, answering another health path: no rolling path takes the stack from
# one to the other (HAProxy's check is the old app's until the lb play), so every node is
# switched in place, as app_rollout documents. test_deploy.py rolls a new release.
REPLACE = ("-e", "app_rollout=replace")
ADMIN_PASSWORD = uuid.uuid4().hex


def masters_releases(name: str) -> set[str]:
    """The release each gunicorn master on the node runs (its working directory)."""
    out = get_host(name).check_output(
        "for pid in $(systemctl show -p MainPID --value 'gunicorn@*.service'); do"
        " readlink /proc/$pid/cwd; done"
    )
    return {Path(line).name for line in out.split()}


def current_release(name: str) -> str:
    return Path(get_host(name).check_output("readlink /srv/kit-app/current")).name


def servers_status() -> dict[str, str]:
    out = get_host(LB).check_output("echo 'show stat' | socat stdio /run/haproxy/admin.sock")
    rows = [line.split(",") for line in out.splitlines() if line.startswith("app,")]
    return {row[1]: row[17] for row in rows if row[1] not in ("FRONTEND", "BACKEND")}


def wait_all_up(timeout: float = 30) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while (status := servers_status()) and any(s != "UP" for s in status.values()):
        if time.monotonic() > deadline:
            break
        time.sleep(1)
    return status


def deploy(vars_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_playbook("site.yml", "--tags", TAGS, "-e", f"@{vars_file}", *REPLACE, *extra)


def in_release(name: str, code: str, env: dict[str, str] | None = None) -> str:
    """Python run on a host in the current release, as the application, with its environment."""
    setenv = " ".join(f"-E {key}={value}" for key, value in (env or {}).items())
    return get_host(name).check_output(
        "systemd-run --quiet --wait --pipe --collect -p User=kit-app"
        " -p EnvironmentFile=/etc/kit-app/env -p WorkingDirectory=/srv/kit-app/current"
        f" {setenv} /srv/kit-app/current/venv/bin/python -c {json.dumps(code)}"
    )


@pytest.fixture(scope="module")
def failed_rollout() -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """httpbin told to answer /healthz, which it does not: every instance fails its check."""
    before = {name: current_release(name) for name in APP_NODES}
    result = run_playbook(
        "site.yml", "--tags", "app", "-e", f"@{HTTPBIN}", "-e", "app_health_path=/healthz", *REPLACE
    )
    return result, before


def test_a_release_failing_its_health_check_leaves_every_node_on_the_release_it_ran(
    failed_rollout: tuple[subprocess.CompletedProcess[str], dict[str, str]],
) -> None:
    result, before = failed_rollout
    assert result.returncode != 0, result.stdout[-3000:]
    assert "did not answer GET /healthz" in result.stdout
    for name in APP_NODES:
        assert current_release(name) == before[name]
        assert masters_releases(name) == {before[name]}, name
    assert set(wait_all_up().values()) == {"UP"}
    assert requests.get(f"{LB_URL}/readyz", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def httpbin(failed_rollout: object) -> subprocess.CompletedProcess[str]:
    return deploy(HTTPBIN)


def test_httpbin_from_pypi_serves_through_haproxy_on_its_own_health_path(
    httpbin: subprocess.CompletedProcess[str],
) -> None:
    assert httpbin.returncode == 0, httpbin.stdout[-3000:]
    config = get_host(LB).file("/etc/haproxy/haproxy.cfg").content_string
    assert "uri /status/200 " in config
    assert set(wait_all_up().values()) == {"UP"}
    releases = {name: current_release(name) for name in APP_NODES}
    for name in APP_NODES:
        assert masters_releases(name) == {releases[name]}
    request_ids = set()
    for _ in range(8):
        # show_env: httpbin hides the headers a proxy adds unless asked.
        answer = requests.get(f"{LB_URL}/get?show_env=1", timeout=10)
        assert answer.status_code == 200
        request_ids.add(answer.json()["headers"].get("X-Request-Id"))
    assert None not in request_ids, "HAProxy's request id reaches httpbin"
    assert len(request_ids) == 8


def test_httpbin_workers_run_plain_rq_and_take_jobs(
    httpbin: subprocess.CompletedProcess[str],
) -> None:
    for name in WORKERS:
        unit = get_host(name).check_output("systemctl cat rq-worker@1.service")
        assert "/venv/bin/rq worker --with-scheduler" in unit
    code = (
        "import os, time; from redis import Redis; from rq import Queue;"
        "q = Queue('default', connection=Redis.from_url(os.environ['RQ_REDIS_URL']));"
        "job = q.enqueue('builtins.len', [1, 2, 3]);"
        "[time.sleep(0.2) for _ in range(100) if not job.refresh() and not job.is_finished];"
        "print(job.return_value(), job.worker_name)"
    )
    result, worker = in_release(APP_NODES[0], code).split()
    assert result == "3", worker


@pytest.fixture(scope="module")
def django(httpbin: object) -> subprocess.CompletedProcess[str]:
    result = deploy(DJANGO)
    if result.returncode == 0:
        in_release(
            APP_NODES[0],
            "from django.core.management import execute_from_command_line as run;"
            "run(['django-admin', 'createsuperuser', '--noinput', '--username', 'admin',"
            " '--email', 'admin@example.com'])",
            {"DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
        )
    return result


def admin_session() -> tuple[requests.Session, requests.Response]:
    session = requests.Session()
    page = session.get(f"{LB_URL}/admin/login/?next=/admin/", timeout=10)
    assert page.status_code == 200, page.text[:500]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    answer = session.post(
        f"{LB_URL}/admin/login/?next=/admin/",
        data={
            "username": "admin",
            "password": ADMIN_PASSWORD,
            "csrfmiddlewaretoken": token[1],
            "next": "/admin/",
        },
        timeout=10,
    )
    return session, answer


def test_the_django_admin_login_holds_across_both_app_nodes(
    django: subprocess.CompletedProcess[str],
) -> None:
    assert django.returncode == 0, django.stdout[-3000:]
    assert set(wait_all_up().values()) == {"UP"}
    session, answer = admin_session()
    assert answer.status_code == 200
    assert "Site administration" in answer.text, answer.text[:500]
    nodes = set()
    for _ in range(12):
        who = session.get(f"{LB_URL}/whoami", timeout=10).json()
        assert who["user"] == "admin", who
        nodes.add(who["node"])
    assert nodes == set(APP_NODES)
    assert session.get(f"{LB_URL}/admin/guestbook/entry/", timeout=10).status_code == 200
    css = requests.get(f"{LB_URL}/static/admin/css/base.css", timeout=10)
    assert css.status_code == 200
    assert "text/css" in css.headers["Content-Type"]


def read_entry(entry: int, until: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = requests.get(f"{LB_URL}/entries/{entry}/", timeout=10)
        if answer.status_code == 200 and answer.json().get(until) not in (None, ""):
            return dict(answer.json())
        assert time.monotonic() < deadline, answer.text[:500]
        time.sleep(0.5)


def test_a_django_row_written_on_the_primary_is_read_back_from_a_replica(
    django: subprocess.CompletedProcess[str],
) -> None:
    text = f"written through haproxy {uuid.uuid4()}"
    created = requests.post(f"{LB_URL}/entries/", json={"text": text}, timeout=10)
    assert created.status_code == 201, created.text[:500]
    entry = read_entry(created.json()["id"], "text")
    assert entry["text"] == text
    assert (entry["read_alias"], entry["read_in_recovery"]) == ("replica", True)
    pools = get_host(APP_NODES[0]).file("/etc/pgbouncer/pgbouncer.ini").content_string
    assert re.search(r"^kit_ro = .*host=", pools, re.M), "the replica alias is PgBouncer's _ro pool"


def test_django_requests_are_counted_by_their_route_template(
    django: subprocess.CompletedProcess[str],
) -> None:
    """Another app's requests in the kit's request metrics: labelled with the route as
    written in its urls.py (the example's middleware), served by every node's reaper."""
    route = 'kit_app_requests_total{route="/entries/<int:entry_id>/"}'
    for entry in range(1, 21):
        requests.get(f"{LB_URL}/entries/{entry}/", timeout=10)
    deadline = time.monotonic() + 30
    while True:
        answer = requests.get(f"{PROMETHEUS_URL}/api/v1/query", params={"query": route}, timeout=10)
        answer.raise_for_status()
        hosts = {r["metric"]["host"] for r in answer.json()["data"]["result"]}
        if hosts == set(APP_NODES):
            break
        assert time.monotonic() < deadline, f"counted on {sorted(hosts)} only"
        time.sleep(1)


def test_a_job_enqueued_by_django_runs_on_the_workers(
    django: subprocess.CompletedProcess[str],
) -> None:
    created = requests.post(f"{LB_URL}/entries/", json={"text": "one two three four"}, timeout=10)
    assert created.status_code == 201, created.text[:500]
    entry = created.json()["id"]
    assert requests.post(f"{LB_URL}/entries/{entry}/count/", timeout=10).status_code == 202
    counted = read_entry(entry, "counted_by", timeout=60)
    assert counted["word_count"] == 4
    hostnames = {get_host(name).check_output("hostname") for name in WORKERS}
    assert counted["counted_by"] in hostnames


def test_a_rollback_to_a_release_that_cannot_serve_puts_the_node_back_on_its_own(
    django: subprocess.CompletedProcess[str],
) -> None:
    """deploy.yml back to the httpbin release, kept on the nodes, whose instances cannot run
    under the Django units: the first node goes back to Django, and the rollout stops."""
    assert django.returncode == 0
    running = {name: current_release(name) for name in APP_NODES}
    package = get_host(APP_NODES[0]).check_output(
        "ls -d /srv/kit-app/releases/*/venv/lib/python3*/site-packages/httpbin"
    )
    httpbin_release = Path(package).parts[4]
    result = run_playbook("deploy.yml", "-e", f"app_release={httpbin_release}")
    assert result.returncode != 0, result.stdout[-3000:]
    assert f"Its instances are back on {running[APP_NODES[0]]}" in result.stdout
    for name in APP_NODES:
        assert current_release(name) == running[name]
        assert masters_releases(name) == {running[name]}, name
    assert set(wait_all_up().values()) == {"UP"}
    assert requests.get(f"{LB_URL}/readyz", timeout=10).status_code == 200
