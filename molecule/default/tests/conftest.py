"""Fixtures for checks against the converged full topology.

Hosts and their variables come from the same inventory Molecule ran the playbooks with,
so a host added to ``inventories/local`` is checked without editing a test.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import testinfra
from testinfra.utils.ansible_runner import AnsibleRunner


def _inventory_dir() -> str:
    inventory_file = os.environ.get("MOLECULE_INVENTORY_FILE")
    if inventory_file:
        return str(Path(inventory_file).parent)
    return str(Path(__file__).resolve().parents[3] / "inventories" / "local")


INVENTORY = AnsibleRunner(_inventory_dir())
ALL_HOSTS: list[str] = sorted(INVENTORY.get_hosts("all"))


def host_vars(name: str) -> dict[str, Any]:
    """The inventory variables of one host (group_vars and host_vars merged)."""
    return dict(INVENTORY.get_variables(name))


@pytest.fixture(scope="session")
def inventory() -> AnsibleRunner:
    return INVENTORY


@pytest.fixture(scope="session")
def private_ips() -> dict[str, str]:
    return {name: str(host_vars(name)["private_ip"]) for name in ALL_HOSTS}


def secrets_dir() -> Path:
    """Where the inventory's password lookups write the local environment's secrets: beside
    the file that defines the hosts (hosts.yml, linked into Molecule's inventory as the
    directory `hosts`)."""
    for base in (Path(_inventory_dir()) / "hosts", Path(_inventory_dir())):
        if (base / ".secrets").is_dir():
            return base / ".secrets"
    raise FileNotFoundError(f"no .secrets beside the inventory {_inventory_dir()}")


def secret(name: str) -> str:
    """A secret of the local environment, as generated on the controller."""
    return (secrets_dir() / name).read_text().strip()


def all_secrets() -> dict[str, str]:
    """Every secret of the local environment, by name."""
    return {
        path.name: secret(path.name) for path in sorted(secrets_dir().iterdir()) if path.is_file()
    }


def get_host(name: str) -> testinfra.host.Host:
    """A testinfra host for one inventory host, through the inventory's connection."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={_inventory_dir()}")


def run_playbook(
    playbook: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one of the kit's playbooks against the inventory the scenario converged; env adds
    variables to the run's environment."""
    root = Path(__file__).resolve().parents[3]
    variables = dict(os.environ, ANSIBLE_CONFIG=str(root / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    variables |= {"ANSIBLE_FORCE_COLOR": "0", **(env or {})}
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", _inventory_dir(),
         str(root / "ansible" / playbook), *args],
        cwd=root, env=variables, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


@contextmanager
def clients_running(client: Callable[[], None], count: int, stop: threading.Event,
                    join_timeout: float) -> Iterator[None]:  # fmt: skip
    """`count` daemon threads running `client` for the length of the block; `stop` is set
    when it ends, and each thread gets `join_timeout` seconds to finish its request."""
    threads = [threading.Thread(target=client, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=join_timeout)


# Run after every other check, in this order: the module that kills the primary (it ends
# with the inventory's primary leading again), the module that adds hosts the stack's own
# inventory does not name, then the one that deploys other applications over the kit's
# example application, which the other checks expect.
LAST_MODULES = ("test_failover.py", "test_scale.py", "test_your_app.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order = {name: position + 1 for position, name in enumerate(LAST_MODULES)}
    items.sort(key=lambda item: order.get(item.path.name, 0))


LB_URL = str(host_vars(INVENTORY.get_hosts("lb")[0])["local_stack_lb_url"])


def wait_for_job(job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job's status through HAProxy once it finished or failed, or after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = requests.get(f"{LB_URL}/jobs/{job_id}", timeout=10).json()
        if body["status"] in {"finished", "failed"} or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def superuser_sql(host: testinfra.host.Host, sql: str, database: str = "kit") -> str:
    """SQL as the postgres superuser on a database host's own socket."""
    return host.check_output(
        "runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d %s -c %s", database, sql
    )


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

    start = time.monotonic()
    try:
        with clients_running(client, clients, stop, join_timeout=60):
            yield stream
    finally:
        stream.seconds = time.monotonic() - start


def current_release(name: str) -> str:
    return Path(get_host(name).check_output("readlink /srv/kit-app/current")).name


def server_states() -> dict[str, str]:
    """Every server of the app backend on the first lb, with its status (UP, DRAIN, ...)."""
    lb = get_host(INVENTORY.get_hosts("lb")[0])
    stat = lb.check_output("echo 'show stat' | socat stdio /run/haproxy/admin.sock")
    rows = csv.DictReader(io.StringIO(stat.lstrip("# ")))
    return {
        r["svname"]: r["status"] for r in rows if r["pxname"] == "app" and r["svname"] != "BACKEND"
    }


def skeleton_copy(directory: Path, version: str | None = None) -> Path:
    """A copy of the kit's example application under `directory`, at `version` when given:
    the source of a release other than the one the stack runs."""
    source = directory / "app_skeleton"
    skeleton = Path(__file__).resolve().parents[3] / "app_skeleton"
    shutil.copytree(skeleton, source, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    if version is not None:
        pyproject = source / "pyproject.toml"
        text = pyproject.read_text()
        pyproject.write_text(
            re.sub(r'^version = ".*"$', f'version = "{version}"', text, flags=re.M)
        )
    return source
