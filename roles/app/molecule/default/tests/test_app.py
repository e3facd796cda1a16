"""The app role alone: releases from the wheelhouse, three gunicorn instances."""

from __future__ import annotations

import json
import re
import time

PORTS = (8001, 8002, 8003)
HOME = "/srv/kit-app"


def master_pid(host, port: int) -> int:
    return int(host.check_output(f"systemctl show --value -p MainPID gunicorn@{port}.service"))


def workers_of(host, pid: int) -> set[int]:
    return {int(p) for p in host.check_output(f"pgrep -P {pid} || true").split()}


def test_current_release_is_a_venv_built_from_the_shipped_wheels(host) -> None:
    current = host.file(f"{HOME}/current")
    assert current.is_symlink
    assert re.fullmatch(rf"{HOME}/releases/[0-9a-f]{{12}}", current.linked_to)
    assert host.file(f"{current.linked_to}/.installed").exists
    assert host.file(f"{current.linked_to}/venv/bin/gunicorn").exists
    # The release's wheels came as one bundle named after it, and only that one is left.
    release = current.linked_to.rsplit("/", 1)[1]
    assert host.check_output(f"ls {HOME}/wheelhouse").split() == [f"{release}.tar"]
    wheels = host.check_output(f"tar -tf {HOME}/wheelhouse/{release}.tar")
    assert "kit_app-" in wheels
    assert "gunicorn-" in wheels


def test_every_instance_runs_and_answers_as_itself(host) -> None:
    for port in PORTS:
        assert host.service(f"gunicorn@{port}").is_running
        body = json.loads(host.check_output(f"curl -sf http://127.0.0.1:{port}/whoami"))
        assert body["instance"] == str(port)


def test_each_instance_has_its_preforked_workers(host) -> None:
    for port in PORTS:
        assert len(workers_of(host, master_pid(host, port))) == 2


def test_instances_run_hardened_as_the_app_user(host) -> None:
    unit = "gunicorn@8001.service"
    assert host.check_output(f"systemctl show --value -p User {unit}") == "kit-app"
    assert host.check_output(f"systemctl show --value -p ProtectSystem {unit}") == "strict"
    assert host.check_output(f"systemctl show --value -p NoNewPrivileges {unit}") == "yes"
    assert host.check_output(f"ps -o user= -p {master_pid(host, 8001)}") == "kit-app"


def test_reload_replaces_workers_and_keeps_the_master(host) -> None:
    master = master_pid(host, 8002)
    before = workers_of(host, master)
    host.check_output("systemctl reload gunicorn@8002.service")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = workers_of(host, master)
        if len(after) == 2 and not after & before:
            break
        time.sleep(0.5)
    assert master_pid(host, 8002) == master
    assert len(after) == 2
    assert not after & before
    assert host.run("curl -sf http://127.0.0.1:8002/healthz").rc == 0


def test_the_load_balancer_can_read_every_instance(host) -> None:
    listening = host.check_output("ss -ltnH").split()
    for port in PORTS:
        assert f"127.0.0.1:{port}" in listening
