"""Workers whose private memory grew past the limit, against a real gunicorn: recycled
gracefully, and never more of one instance at once than its budget."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from conftest import (
    INSTANCE,
    Gunicorn,
    alive,
    board_claiming,
    in_background,
    reaper_config,
    running_reaper,
    scan_in_a_thread,
    start_ticks,
    wait_for,
)

from kit_reaper.config import Config
from kit_reaper.reaper import Event, Reaper
from kit_reaper.scoreboard import SlotState

LIMIT_MB = 60
# Requests under /long/ have a 30 s deadline: these tests are about memory only.


@pytest.mark.parametrize(
    ("worker_class", "workers", "threads"), [("sync", 2, 1), ("gthread", 2, 2)]
)
def test_growing_worker_finishes_its_request_then_is_replaced(
    start_gunicorn: Callable[..., Gunicorn], worker_class: str, workers: int, threads: int
) -> None:
    server = start_gunicorn(worker_class, workers=workers, threads=threads)
    with running_reaper(reaper_config(server.directory, limit_mb=LIMIT_MB)) as running:
        grow = in_background(server, "/long/grow?mb=120&hold=3", request_id="grow")
        grown = wait_for("the growing request", lambda: server.busy_slot("grow"))
        recycle = wait_for("the recycle", lambda: running.find(event="recycle"))
        recycled_mid_request = not grow.done.is_set()
        grow.join()
        wait_for("the worker's exit", lambda: running.find(event="exited", pid=grown.pid))
        wait_for("a replacement worker", lambda: len(server.worker_pids()) == workers)

    # SIGTERM reached the worker while it was still serving, and it answered all the same.
    assert recycled_mid_request
    assert grow.response is not None
    assert grow.response.status == 200
    assert grow.response.pid == grown.pid == recycle["pid"]
    assert recycle["signal"] == "SIGTERM"
    assert isinstance(recycle["private_bytes"], int)
    assert recycle["private_bytes"] > LIMIT_MB << 20
    assert not alive(grown.pid)
    assert grown.pid not in server.worker_pids()
    assert running.find(event="kill") is None  # drained in time: no SIGKILL
    registry = running.reaper.metrics.registry
    assert (
        registry.get_sample_value(
            "kit_reaper_recycles_total", {"instance": INSTANCE, "reason": "memory"}
        )
        == 1.0
    )


def test_instance_never_recycles_more_than_its_budget_at_once(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    server = start_gunicorn("sync", workers=3)
    events: list[Event] = []
    reaper = Reaper(
        reaper_config(server.directory, limit_mb=LIMIT_MB, recycle_budget=1), emit=events.append
    )
    # Three sync workers, three requests: each worker grows past the limit.
    grows = [
        in_background(server, "/long/grow?mb=100&hold=1.5", request_id=f"g{i}") for i in range(3)
    ]
    grown = {wait_for(rid, partial(server.busy_slot, rid)).pid for rid in ("g0", "g1", "g2")}
    assert len(grown) == 3

    most_at_once = 0
    recycled: set[int] = set()

    def all_recycled() -> bool:
        nonlocal most_at_once
        reaper.scan()
        recycled.update(int(str(e["pid"])) for e in events if e["event"] == "recycle")
        # Signalled and not yet gone, seen from outside the reaper.
        most_at_once = max(most_at_once, sum(1 for pid in recycled if alive(pid)))
        return recycled >= grown and not any(alive(pid) for pid in grown)

    wait_for("every grown worker recycled", all_recycled)
    reaper.close()
    for g in grows:
        g.join()

    assert most_at_once == 1
    assert not any(e["event"] == "kill" for e in events)
    assert all(g.response is not None and g.response.status == 200 for g in grows)


def worker_over_the_limit(
    directory: Path, sleeper: subprocess.Popen[bytes], *, age_s: float, state: SlotState
) -> Config:
    """`sleeper` on a hand-written board (this process its arbiter), its request `age_s`
    old; a config whose memory limit (1 KiB) it is over, with a day's deadline and a 1 s drain."""
    board_claiming(
        directory,
        arbiter_pid=os.getpid(),
        pid=sleeper.pid,
        slot_start_ticks=start_ticks(sleeper.pid),
        age_s=age_s,
        state=state,
    )
    config = reaper_config(directory, limit_mb=1 / 1024)
    return replace(
        config,
        deadline=replace(config.deadline, default_s=600.0),
        memory=replace(config.memory, drain_s=1.0),
    )


def test_a_recycle_waits_out_the_deadline_left_to_the_request_in_flight(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    """A request 100 s into its 600 s deadline is not cut by the 1 s drain: SIGKILL only
    after the 500 s it still has."""
    config = worker_over_the_limit(tmp_path, sleeper, age_s=100.0, state=SlotState.BUSY)
    events: list[Event] = []
    reaper = Reaper(config, emit=events.append)
    scan_in_a_thread(reaper)
    reaper.close()

    recycle = next(e for e in events if e["event"] == "recycle")
    assert 499.0 < float(str(recycle["sigkill_after_s"])) <= 500.0


@pytest.mark.parametrize("recycle_idle", [True, False])
def test_idle_workers_over_the_limit_are_recycled_unless_switched_off(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], recycle_idle: bool
) -> None:
    config = worker_over_the_limit(tmp_path, sleeper, age_s=0.0, state=SlotState.IDLE)
    config = replace(config, memory=replace(config.memory, recycle_idle=recycle_idle))
    events: list[Event] = []
    reaper = Reaper(config, emit=events.append)
    scan_in_a_thread(reaper)
    reaper.close()

    recycles = [e for e in events if e["event"] == "recycle"]
    assert len(recycles) == (1 if recycle_idle else 0), events
    if recycle_idle:
        assert recycles[0]["sigkill_after_s"] == 1.0  # nothing in flight: the drain alone
