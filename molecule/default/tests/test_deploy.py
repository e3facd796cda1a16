"""Rolling deploys (ansible/deploy.yml) under a steady stream of requests, and rollback.

The rolling deploy runs with no fact from any earlier run (the state a deploy was in two
hours after a converge, when facts were cached on disk): whatever it needs from the other
layers (Redis and database endpoints, the gunicorn listeners) it computes in its own run.
The tests after it check what a deploy that relied on an earlier run's facts got wrong in a
green run: the workers' environment, every RQ worker taking jobs, and the migration.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from conftest import (
    INVENTORY,
    LB_URL,
    Stream,
    clients_running,
    current_release,
    get_host,
    host_vars,
    run_playbook,
    server_states,
    skeleton_copy,
    steady_stream,
    wait_for_job,
)

ROOT = Path(__file__).resolve().parents[3]
APP_NODES = sorted(INVENTORY.get_hosts("app"))
WORKER_HOSTS = sorted(INVENTORY.get_hosts("workers"))
CODE_HOSTS = APP_NODES + WORKER_HOSTS
RQ_WORKER_DEFAULTS = yaml.safe_load((ROOT / "roles/rq_worker/defaults/main.yml").read_text())


@pytest.fixture(scope="module")
def new_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the app skeleton with a new version: a real new release."""
    return skeleton_copy(tmp_path_factory.mktemp("app"), version="99.0.0")


@pytest.fixture(scope="module")
def no_fact_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a run that has no fact from an earlier one: the kit's cache
    directory removed, and an empty one named should a persistent cache be configured."""
    shutil.rmtree(ROOT / ".cache" / "facts", ignore_errors=True)
    return {"ANSIBLE_CACHE_PLUGIN_CONNECTION": str(tmp_path_factory.mktemp("no-facts"))}


@dataclass
class Deploy:
    result: subprocess.CompletedProcess[str]
    stream: Stream
    before: dict[str, str]
    # On each workers host, its clock when the deploy started (for journalctl --since).
    started: dict[str, str]

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr


@pytest.fixture(scope="module")
def rolling_deploy(new_version: Path, no_fact_cache: dict[str, str]) -> Deploy:
    """A new release rolled out under steady traffic, with no fact cache."""
    before = {name: current_release(name) for name in CODE_HOSTS}
    started = {
        name: get_host(name).check_output("date '+%Y-%m-%d %H:%M:%S'") for name in WORKER_HOSTS
    }
    with steady_stream() as stream:
        time.sleep(2)
        result = run_playbook(
            "deploy.yml", "-e", f"app_source_dir={new_version}", env=no_fact_cache
        )
        time.sleep(2)
    return Deploy(result, stream, before, started)


def test_rolling_deploy_under_steady_traffic_fails_no_request(rolling_deploy: Deploy) -> None:
    result, stream, before = rolling_deploy.result, rolling_deploy.stream, rolling_deploy.before
    assert result.returncode == 0, rolling_deploy.output[-4000:]
    after = {name: current_release(name) for name in CODE_HOSTS}
    print(
        f"rolling deploy: {stream.seconds:.1f}s, {sum(stream.outcomes.values())} requests "
        f"({stream.rate:.0f}/s), outcomes {dict(stream.outcomes)}"
    )
    assert len(set(after.values())) == 1
    assert set(after.values()).isdisjoint(before.values())
    assert stream.rate >= 50
    assert set(stream.outcomes) == {"ok"}, stream.outcomes
    # The instances run the new release's code.
    for name in APP_NODES:
        pids = get_host(name).check_output("pgrep -f 'gunicorn --config' | head -1")
        assert get_host(name).check_output(f"readlink -f /proc/{pids}/cwd").endswith(after[name])


def test_the_workers_move_after_the_migration_and_before_any_web_node(
    rolling_deploy: Deploy,
) -> None:
    """deploy_workers_first (the default): the first app node migrates and tries the
    release, then the workers restart on it, and only then is any app node drained."""
    output = rolling_deploy.output
    migrated = output.index("TASK [app : Run the release's schema migration")
    workers = output.index("TASK [rq_worker : ")
    drained = output.index("TASK [Drain this node's instances in HAProxy")
    assert migrated < workers < drained
    first_play = output[: output.index("PLAY [Roll the release over the app nodes]")]
    assert "TASK [app : Start a trial instance of release" in first_play
    assert "RUNNING HANDLER [rq_worker : " in first_play


def test_deploy_with_no_fact_cache_keeps_every_url_in_the_environment(
    rolling_deploy: Deploy,
) -> None:
    assert rolling_deploy.result.returncode == 0, rolling_deploy.output[-4000:]
    # The workers' Redis user has the queues only: no sessions or cache URL there.
    everywhere = {"KIT_REDIS_QUEUES_URL", "KIT_DATABASE_URL", "KIT_DATABASE_READ_URL"}
    web_only = {"KIT_REDIS_SESSIONS_URL", "KIT_REDIS_CACHE_URL"}
    for name in CODE_HOSTS:
        env = get_host(name).check_output("cat /etc/kit-app/env").splitlines()
        names = {line.split("=", 1)[0] for line in env if "=" in line}
        wanted = everywhere | (web_only if name in APP_NODES else set())
        missing = wanted - names
        assert not missing, f"{name}: /etc/kit-app/env lacks {sorted(missing)}"
        if name not in APP_NODES:
            assert not names & web_only, f"{name}: a worker host has {sorted(names & web_only)}"


def test_deploy_with_no_fact_cache_runs_the_migration(rolling_deploy: Deploy) -> None:
    assert rolling_deploy.result.returncode == 0, rolling_deploy.output[-4000:]
    # Once per batch of deploy_serial nodes (run_once), each "ok" (up to date) or "changed"
    # (applied); "skipping" is what a deploy without the PgBouncer endpoint printed.
    runs = [
        re.findall(r"^(ok|changed|skipping|failed|fatal): \[", block, flags=re.M)
        for block in rolling_deploy.output.split("TASK [")[1:]
        if block.startswith("app : Run the release's schema migration")
    ]
    assert runs, "the deploy never reached the migration"
    assert all(outcome and set(outcome) <= {"ok", "changed"} for outcome in runs), runs


def test_every_rq_worker_processes_a_job_after_a_deploy_with_no_fact_cache(
    rolling_deploy: Deploy,
) -> None:
    assert rolling_deploy.result.returncode == 0, rolling_deploy.output[-4000:]
    workers = {
        (name, n)
        for name in WORKER_HOSTS
        for n in range(
            1,
            int(host_vars(name).get("rq_worker_count", RQ_WORKER_DEFAULTS["rq_worker_count"])) + 1,
        )
    }
    seen: set[tuple[str, int]] = set()
    enqueued: list[str] = []
    deadline = time.monotonic() + 90
    while seen != workers:
        assert time.monotonic() < deadline, f"took no job: {sorted(workers - seen)}"
        # One 2 s job per worker, enqueued at once through HAProxy: each idle worker takes one.
        batch = [
            requests.post(
                f"{LB_URL}/jobs",
                params={"label": f"after-deploy-{uuid.uuid4()}", "seconds": "2"},
                timeout=10,
            ).json()["id"]
            for _ in workers
        ]
        for job_id in batch:
            body = wait_for_job(job_id)
            assert body["status"] == "finished", body
        enqueued += batch
        # Each worker logs the id of every job it takes, to its own unit's journal.
        for name, n in sorted(workers - seen):
            journal = get_host(name).check_output(
                f"journalctl -u rq-worker@{n}.service --no-pager -o cat "
                f"--since '{rolling_deploy.started[name]}'"
            )
            if any(job_id in journal for job_id in enqueued):
                seen.add((name, n))


@dataclass
class SiteRoll:
    result: subprocess.CompletedProcess[str]
    stream: Stream
    before: dict[str, str]
    # Each sample of the lb's app servers taken during the run: the nodes with one drained.
    drained: list[frozenset[str]]


@pytest.fixture(scope="module")
def site_roll(tmp_path_factory: pytest.TempPathFactory, rolling_deploy: Deploy) -> SiteRoll:
    """site.yml given the source of another release, under steady traffic, the lb's servers
    sampled meanwhile."""
    source = skeleton_copy(tmp_path_factory.mktemp("site"), version="98.0.0")
    before = {name: current_release(name) for name in CODE_HOSTS}
    drained: list[frozenset[str]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.3):
            states = server_states()
            drained.append(
                frozenset(
                    node
                    for node in APP_NODES
                    for server, status in states.items()
                    if server.startswith(f"{node}-") and "DRAIN" in status
                )
            )

    sampler = threading.Thread(target=sample)
    with steady_stream() as stream:
        sampler.start()
        try:
            result = run_playbook(
                "site.yml", "--tags", "app,rq_worker", "-e", f"app_source_dir={source}"
            )
        finally:
            stop.set()
            sampler.join()
    return SiteRoll(result, stream, before, drained)


def test_site_yml_rolls_a_new_release_one_drained_node_at_a_time_under_traffic(
    site_roll: SiteRoll,
) -> None:
    """A node that serves changes its release through the rolling path only: each app node
    in turn drained in HAProxy (deploy_serial 1), never two at once, and no request fails."""
    result, stream = site_roll.result, site_roll.stream
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    after = {name: current_release(name) for name in CODE_HOSTS}
    print(
        f"site.yml roll: {stream.seconds:.1f}s, {dict(stream.outcomes)}, "
        f"drained samples {sum(1 for d in site_roll.drained if d)} of {len(site_roll.drained)}"
    )
    assert len(set(after.values())) == 1
    assert set(after.values()).isdisjoint(site_roll.before.values())
    assert set().union(*site_roll.drained) == set(APP_NODES), site_roll.drained
    assert max(len(d) for d in site_roll.drained) == 1, site_roll.drained
    assert set(stream.outcomes) == {"ok"}, stream.outcomes


def test_rollback_to_a_kept_release_under_traffic_fails_no_request(
    rolling_deploy: Deploy, site_roll: SiteRoll
) -> None:
    """Back to the release the stack ran before the deploys of this module, kept on every
    host (app_releases_keep: 3)."""
    previous = rolling_deploy.before[APP_NODES[0]]
    assert {current_release(name) for name in CODE_HOSTS} != {previous}
    with steady_stream() as stream:
        result = run_playbook("deploy.yml", "-e", f"app_release={previous}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    print(f"rollback: {dict(stream.outcomes)} in {stream.seconds:.1f}s")
    assert {current_release(name) for name in CODE_HOSTS} == {previous}
    assert set(stream.outcomes) == {"ok"}, stream.outcomes


def test_site_yml_leaves_a_rollback_in_place(new_version: Path) -> None:
    """The controller builds another release (the one rolled back from), and site.yml moves
    no host: each stays on the release the rollback pinned, until the next deploy."""
    before = {name: current_release(name) for name in CODE_HOSTS}
    result = run_playbook(
        "site.yml", "--tags", "app,rq_worker", "-e", f"app_source_dir={new_version}"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert {name: current_release(name) for name in CODE_HOSTS} == before
    for name in CODE_HOSTS:
        assert f"{name} stays on release {before[name]}, which a rollback pinned" in output
        pin = get_host(name).file("/srv/kit-app/pinned-release").content_string.strip()
        assert pin == before[name]


def test_rollback_to_an_unknown_release_changes_nothing() -> None:
    before = {name: current_release(name) for name in CODE_HOSTS}
    result = run_playbook("deploy.yml", "-e", "app_release=0123456789ab")
    assert result.returncode != 0
    assert {name: current_release(name) for name in CODE_HOSTS} == before


def test_a_node_that_never_becomes_ready_serves_again_and_stops_the_rollout() -> None:
    """Healthy (alive) but never ready: the first node's instances restart, never answer the
    readiness path, go back into rotation on the release they ran, and the rollout stops
    there, under traffic with no failed request."""
    before = {name: current_release(name) for name in CODE_HOSTS}
    with steady_stream() as stream:
        result = run_playbook(
            "deploy.yml", "-e", "app_ready_path=/never-ready", "-e", "deploy_ready_timeout=3"
        )
    output = result.stdout + result.stderr
    print(f"readiness gate: {dict(stream.outcomes)} in {stream.seconds:.1f}s")
    assert result.returncode != 0, output[-4000:]
    gate = "TASK [Wait until every instance of this node is ready (GET /never-ready)]"
    assert gate in output
    assert "TASK [Stop the rollout at this node]" in output
    assert {name: current_release(name) for name in CODE_HOSTS} == before
    assert set(stream.outcomes) == {"ok"}, stream.outcomes
    states = server_states()
    assert states
    assert set(states.values()) == {"UP"}, states


def test_a_release_that_fails_requests_goes_back_after_its_bake_time(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Alive and ready, but /whoami answers 500: the first node serves it for its bake time,
    its error rate through HAProxy is above deploy_max_error_rate, and it goes back to the
    release it ran; the rollout stops there, and the site answers as before. The workers,
    moved first, stay on the new release (its jobs are not what failed)."""
    source = skeleton_copy(tmp_path_factory.mktemp("failing"))
    web = source / "src" / "kit_app" / "web.py"
    docstring = '"""Which node, instance and worker served this request, and its request id."""'
    assert docstring in web.read_text()
    web.write_text(web.read_text().replace(docstring, docstring + "\n        abort(500)"))
    before = {name: current_release(name) for name in CODE_HOSTS}
    tried = set(get_host(APP_NODES[0]).check_output("ls /srv/kit-app/releases").split())
    with steady_stream() as stream:
        result = run_playbook(
            "deploy.yml", "-e", f"app_source_dir={source}", "-e", "deploy_bake_time=5"
        )
    output = result.stdout + result.stderr
    print(f"bake time: {dict(stream.outcomes)} in {stream.seconds:.1f}s")
    assert result.returncode != 0, output[-4000:]
    assert "TASK [Check the node's error rate over its bake time]" in output
    assert "above deploy_max_error_rate" in output, output[-4000:]
    assert "TASK [Stop the rollout at this node]" in output
    assert {name: current_release(name) for name in APP_NODES} == {n: before[n] for n in APP_NODES}
    new = set(get_host(APP_NODES[0]).check_output("ls /srv/kit-app/releases").split()) - tried
    assert {current_release(name) for name in WORKER_HOSTS} == new, new
    # A deploy of a new release unpins the hosts it moves (the rollback pinned them).
    for name in WORKER_HOSTS:
        assert not get_host(name).file("/srv/kit-app/pinned-release").exists
    assert get_host(APP_NODES[0]).file("/srv/kit-app/pinned-release").exists
    # Only the bake time's requests to the first node failed, and only with the app's 500.
    assert set(stream.outcomes) <= {"ok", "status 500"}, stream.outcomes
    assert stream.outcomes["status 500"] > 0, stream.outcomes
    with steady_stream() as after:
        time.sleep(3)
    assert set(after.outcomes) == {"ok"}, after.outcomes


def test_a_drain_that_times_out_puts_the_node_back_in_rotation() -> None:
    """Clients keep 4 s requests in flight on every instance, started at staggered times so
    that some always have more than a 1 s deploy_drain_timeout left: the first node's drain
    fails, the node goes back in rotation on the release it runs, and the message names it
    and what failed. No request fails."""
    before = {name: current_release(name) for name in APP_NODES}
    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    starts = iter(range(8))

    def slow_client() -> None:
        time.sleep(next(starts) * 0.5)
        while not stop.is_set():
            try:
                with urllib.request.urlopen(LB_URL + "/_test/sleep?s=4", timeout=30) as answer:
                    answer.read()
                    outcomes["ok" if answer.status == 200 else f"status {answer.status}"] += 1
            except urllib.error.HTTPError as error:
                outcomes[f"status {error.code}"] += 1
            except OSError as error:
                outcomes[type(error).__name__] += 1

    with clients_running(slow_client, 8, stop, join_timeout=30):
        result = run_playbook("deploy.yml", "-e", "deploy_drain_timeout=1")
    output = result.stdout + result.stderr
    print(f"drain timeout: {dict(outcomes)}")
    assert result.returncode != 0, output[-4000:]
    drain = "Wait until the host's servers are drained or UP, as asked by drain failed"
    assert f"{APP_NODES[0]}: {drain}" in output, output[-4000:]
    assert "It serves again." in output
    assert {name: current_release(name) for name in APP_NODES} == before
    # The workers moved first, to the release the controller builds: the one the nodes run.
    assert {current_release(name) for name in WORKER_HOSTS} == set(before.values())
    assert set(server_states().values()) == {"UP"}, server_states()
    assert outcomes["ok"] > 0
    assert set(outcomes) == {"ok"}, outcomes


def test_a_node_whose_release_does_not_serve_stays_drained() -> None:
    """The health path the deploy is given (/nope) is answered by no release: the first
    node's instances fail it on the new release and on the one they go back to, so the node
    stays drained, the message says so, and the clients never see it. No request fails."""
    first = [name for name in server_states() if name.startswith(f"{APP_NODES[0]}-")]
    try:
        with steady_stream() as stream:
            result = run_playbook(
                "deploy.yml", "-e", "app_health_path=/nope", "-e", "deploy_ready_timeout=2"
            )
        output = result.stdout + result.stderr
        print(f"stays drained: {dict(stream.outcomes)} in {stream.seconds:.1f}s")
        assert result.returncode != 0, output[-4000:]
        assert "do not answer /nope on it either: the node stays drained" in output, output[-4000:]
        states = server_states()
        assert {states[name] for name in first} == {"DRAIN"}, states
        assert {s for name, s in states.items() if name not in first} == {"UP"}, states
        assert set(stream.outcomes) == {"ok"}, stream.outcomes
    finally:
        lb = get_host(INVENTORY.get_hosts("lb")[0])
        for name in first:
            lb.check_output(
                f"echo 'set server app/{name} state ready' | socat stdio /run/haproxy/admin.sock"
            )
    deadline = time.monotonic() + 20
    while set(server_states().values()) != {"UP"} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert set(server_states().values()) == {"UP"}, server_states()
