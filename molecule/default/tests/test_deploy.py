"""Rolling deploys (ansible/deploy.yml) under a steady stream of requests, and rollback."""

from __future__ import annotations

import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import INVENTORY, get_host, host_vars, run_playbook

LB_URL = str(host_vars(INVENTORY.get_hosts("lb")[0])["local_stack_lb_url"])
APP_NODES = sorted(INVENTORY.get_hosts("app"))
CODE_HOSTS = APP_NODES + sorted(INVENTORY.get_hosts("workers"))
SKELETON = Path(__file__).resolve().parents[3] / "app_skeleton"


@dataclass
class Stream:
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return sum(self.outcomes.values()) / self.seconds


@contextmanager
def steady_stream(clients: int = 4, rate: float = 80.0) -> Iterator[Stream]:
    """`clients` threads send about `rate` requests/s in all (a new connection each) until
    the block ends, counting outcomes: 'ok' or the failure seen."""
    stream = Stream()
    lock = threading.Lock()
    stop = threading.Event()
    interval = clients / rate

    def client() -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                with urllib.request.urlopen(LB_URL + "/whoami", timeout=30) as response:
                    response.read()
                    outcome = "ok" if response.status == 200 else f"status {response.status}"
            except urllib.error.HTTPError as error:
                outcome = f"status {error.code}"
            except OSError as error:
                outcome = type(error).__name__
            with lock:
                stream.outcomes[outcome] += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        yield stream
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        stream.seconds = time.monotonic() - start


def current_release(name: str) -> str:
    return Path(get_host(name).check_output("readlink /srv/kit-app/current")).name


@pytest.fixture(scope="module")
def new_version(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the app skeleton with a new version: a real new release."""
    source = tmp_path_factory.mktemp("app") / "app_skeleton"
    shutil.copytree(SKELETON, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    pyproject = source / "pyproject.toml"
    text = re.sub(r'^version = ".*"$', 'version = "99.0.0"', pyproject.read_text(), flags=re.M)
    pyproject.write_text(text)
    return source


def test_rolling_deploy_under_steady_traffic_fails_no_request(new_version: Path) -> None:
    before = {name: current_release(name) for name in CODE_HOSTS}
    with steady_stream() as stream:
        time.sleep(2)
        result = run_playbook("deploy.yml", "-e", f"app_source_dir={new_version}")
        time.sleep(2)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
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


def test_rollback_to_a_kept_release_under_traffic_fails_no_request() -> None:
    releases = get_host(APP_NODES[0]).check_output("ls -t /srv/kit-app/releases").split()
    current = current_release(APP_NODES[0])
    previous = next(r for r in releases if r != current)
    with steady_stream() as stream:
        result = run_playbook("deploy.yml", "-e", f"app_release={previous}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    print(f"rollback: {dict(stream.outcomes)} in {stream.seconds:.1f}s")
    assert {current_release(name) for name in CODE_HOSTS} == {previous}
    assert set(stream.outcomes) == {"ok"}, stream.outcomes


def test_rollback_to_an_unknown_release_changes_nothing() -> None:
    before = {name: current_release(name) for name in CODE_HOSTS}
    result = run_playbook("deploy.yml", "-e", "app_release=0123456789ab")
    assert result.returncode != 0
    assert {name: current_release(name) for name in CODE_HOSTS} == before
