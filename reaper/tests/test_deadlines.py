"""Requests past their deadline, against a real gunicorn: killed, logged, and only them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import (
    INSTANCE,
    Gunicorn,
    alive,
    in_background,
    reaper_config,
    running_reaper,
    wait_for,
)


@pytest.mark.parametrize(
    ("worker_class", "workers", "threads"), [("sync", 2, 1), ("gthread", 1, 4)]
)
def test_stuck_request_is_killed_and_logged(
    start_gunicorn: Callable[..., Gunicorn], worker_class: str, workers: int, threads: int
) -> None:
    server = start_gunicorn(worker_class, workers=workers, threads=threads)
    with running_reaper(reaper_config(server.directory)) as running:
        stuck = in_background(server, "/sleep?s=60", request_id=f"stuck-{worker_class}")
        request_id = f"stuck-{worker_class}"
        slot = wait_for("the stuck request", lambda: server.busy_slot(request_id))

        kill = wait_for("the kill", lambda: running.find(event="kill", signal="SIGABRT"))
        stuck.join()
        wait_for("the worker's exit", lambda: running.find(event="exited", pid=slot.pid))

    # Long before its 60 s (the client gives up after 30 s), the request ended without the
    # app's answer: gunicorn's 500 from the aborting worker, or a dropped connection.
    assert stuck.cut_short(), stuck
    assert kill["pid"] == slot.pid
    assert kill["path"] == "/sleep"
    assert kill["method"] == "GET"
    assert kill["request_id"] == request_id
    assert kill["dry_run"] is False
    assert kill["deadline_s"] == 2.0
    assert float(str(kill["age_s"])) >= 2.0  # past it (rounded to the millisecond)
    assert int(str(kill["private_bytes"])) > 0
    assert not alive(slot.pid)
    # The worker's own last words (worker_abort) name the request it was serving.
    assert f"aborted serving GET /sleep (rid={request_id}, " in server.log.read_text()
    registry = running.reaper.metrics.registry
    assert (
        registry.get_sample_value(
            "kit_reaper_kills_total", {"instance": INSTANCE, "reason": "deadline"}
        )
        == 1.0
    )


def test_requests_on_other_workers_complete(start_gunicorn: Callable[..., Gunicorn]) -> None:
    server = start_gunicorn("sync", workers=2)
    with running_reaper(reaper_config(server.directory)) as running:
        # Under /long/ the deadline is 30 s: this one may run its 5 s.
        other = in_background(server, "/long/sleep?s=5", request_id="other")
        wait_for("the other request on the scoreboard", lambda: server.busy_slot("other"))
        stuck = in_background(server, "/sleep?s=60", request_id="stuck")

        kill = wait_for("the kill", lambda: running.find(event="kill", request_id="stuck"))
        other_was_in_flight = not other.done.is_set()
        other.join()
        stuck.join()

    assert other_was_in_flight
    assert other.response is not None
    assert other.response.status == 200
    assert other.response.pid != kill["pid"]
    assert stuck.cut_short(), stuck
    assert running.find(event="kill", request_id="other") is None


def test_kill_log_lists_the_other_requests_in_the_same_worker(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    server = start_gunicorn("gthread", workers=1, threads=4)
    with running_reaper(reaper_config(server.directory)) as running:
        neighbour = in_background(server, "/long/sleep?s=20", request_id="neighbour")
        wait_for("the neighbour on the scoreboard", lambda: server.busy_slot("neighbour"))
        stuck = in_background(server, "/sleep?s=60", request_id="stuck")

        kill = wait_for("the kill", lambda: running.find(event="kill", request_id="stuck"))
        stuck.join()
        neighbour.join()

    others = kill["other_requests"]
    assert isinstance(others, list)
    assert [(o["path"], o["request_id"]) for o in others] == [("/long/sleep", "neighbour")]


def test_idle_workers_are_not_killed(start_gunicorn: Callable[..., Gunicorn]) -> None:
    server = start_gunicorn("sync", workers=2)
    pids = server.worker_pids()
    with running_reaper(reaper_config(server.directory)) as running:
        assert server.get("/sleep?s=0.1").status == 200
        # 15 scans at 0.2 s: well past the 2 s deadline of a request that has ended.
        wait_for("15 scans", lambda: running.reaper.scans >= 15)

    assert server.worker_pids() == pids
    assert running.find(event="kill") is None


def test_stacks_are_read_without_holding_up_the_scans(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    """py-spy's dump of a stuck worker runs beside the scan loop: the reaper keeps scanning
    while it reads, then signals the worker with the stack in the kill event."""
    fake = tmp_path / "py-spy"
    fake.write_text('#!/bin/sh\nsleep 2\necho "Thread 1 (active): fake stack of $3"\n')
    fake.chmod(0o755)
    server = start_gunicorn("sync", workers=2)
    config = dataclasses.replace(reaper_config(server.directory), stacks=True)
    with running_reaper(config, py_spy=str(fake)) as running:
        stuck = in_background(server, "/sleep?s=60", request_id="dumped")
        slot = wait_for("the stuck request", lambda: server.busy_slot("dumped"))
        wait_for("the dump to start", lambda: running.reaper.dumping() or None)
        scans = running.reaper.scans
        kill = wait_for("the kill", lambda: running.find(event="kill", signal="SIGABRT"))
        # 2 s of dump at a scan every 0.2 s: the loop went on meanwhile.
        assert running.reaper.scans - scans >= 5
        stuck.join()
    assert kill["pid"] == slot.pid
    assert kill["stack"] == f"Thread 1 (active): fake stack of {slot.pid}\n"
    assert stuck.cut_short(), stuck
