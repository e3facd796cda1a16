"""The gunicorn hooks with stand-in server, worker and request objects: who gets which slot
group, what a request writes, and the instance name."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kit_reaper import hooks, procfs
from kit_reaper.scoreboard import Board, SlotState


class SyncWorker:
    pass


class AsyncWorker:
    pass


class GeventWorker(AsyncWorker):
    pass


class ThreadWorker:
    pass


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: object) -> None:
        self.lines.append(msg % args)

    warning = error = info


@dataclass
class Cfg:
    workers: int = 2
    threads: int = 1
    worker_connections: int = 1000
    bind: list[str] = field(default_factory=lambda: ["127.0.0.1:8001"])


@dataclass
class Server:
    cfg: Cfg = field(default_factory=Cfg)
    log: Log = field(default_factory=Log)
    WORKERS: dict[int, object] = field(default_factory=dict)
    worker_class: type = SyncWorker


@dataclass
class Worker:
    pid: int = 0
    log: Log = field(default_factory=Log)


@dataclass
class Request:
    method: str = "POST"
    path: str = "/orders"
    headers: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture(autouse=True)
def fresh_hooks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(hooks, "_settings", hooks._Settings())
    monkeypatch.setattr(hooks, "_board", None)
    monkeypatch.setattr(hooks, "_worker", None)
    hooks.configure(directory=tmp_path)
    yield
    if hooks._board is not None:
        hooks._board.close()


def test_arbiter_creates_the_scoreboard_with_spare_groups(tmp_path: Path) -> None:
    server = Server()

    hooks.on_starting(server)

    board = Board(tmp_path / f"8001.{os.getpid()}.scoreboard")
    assert board.header.instance == "8001"
    assert board.header.arbiter_pid == os.getpid()
    assert board.header.arbiter_start_ticks == procfs.self_start_ticks()
    assert (board.header.groups, board.header.slots_per_group) == (4, 1)


def test_each_new_worker_gets_the_lowest_group_no_live_worker_holds() -> None:
    server = Server()
    hooks.on_starting(server)
    workers = [Worker(pid=1000 + i) for i in range(3)]
    for w in workers:
        hooks.pre_fork(server, w)
        server.WORKERS[w.pid] = w
    assert [getattr(w, "kit_reaper_group", None) for w in workers] == [0, 1, 2]

    del server.WORKERS[1001]  # reaped
    replacement = Worker(pid=2000)
    hooks.pre_fork(server, replacement)

    assert getattr(replacement, "kit_reaper_group", None) == 1


def test_worker_beyond_the_groups_is_not_watched_and_said_so() -> None:
    server = Server(cfg=Cfg(workers=1))
    hooks.configure(directory=hooks._settings.directory, spare_workers=0)
    hooks.on_starting(server)
    first, second = Worker(pid=1), Worker(pid=2)
    hooks.pre_fork(server, first)
    server.WORKERS[1] = first

    hooks.pre_fork(server, second)

    assert not hasattr(second, "kit_reaper_group")
    assert "not watched" in server.log.lines[-1]


@pytest.mark.parametrize(
    ("worker_class", "threads", "expected"),
    [(SyncWorker, 1, 1), (ThreadWorker, 8, 8), (GeventWorker, 1, hooks.ASYNC_SLOTS_MAX)],
)
def test_slots_per_worker_follow_the_worker_class(
    worker_class: type, threads: int, expected: int
) -> None:
    assert hooks.slots_per_worker(Server(cfg=Cfg(threads=threads), worker_class=worker_class)) == (
        expected
    )


def started_worker(server: Server) -> Worker:
    """The arbiter starts (the scoreboard), then one worker forks: this process plays it."""
    hooks.on_starting(server)
    worker = Worker(pid=os.getpid())
    hooks.pre_fork(server, worker)
    hooks.post_fork(server, worker)
    return worker


def test_request_marks_a_slot_busy_then_idle() -> None:
    server = Server(cfg=Cfg(threads=2), worker_class=ThreadWorker)
    worker = started_worker(server)
    assert hooks._board is not None
    board = Board(hooks._board.path)
    first = Request(headers=[("HOST", "x"), ("X-REQUEST-ID", "abc-123")])
    second = Request(method="GET", path="/b")

    hooks.pre_request(worker, first)
    hooks.pre_request(worker, second)
    busy = [s for s in board.read_slots() if s is not None and s.busy]
    hooks.post_request(worker, first, {}, None)
    hooks.post_request(worker, second, {}, None)

    assert [(s.index, s.method, s.path, s.request_id) for s in busy] == [
        (0, "POST", "/orders", "abc-123"),
        (1, "GET", "/b", ""),
    ]
    assert {s.pid for s in busy} == {os.getpid()}
    after = board.read_slots()
    assert [s.state if s else None for s in after[:2]] == [SlotState.IDLE, SlotState.IDLE]
    assert [s.state if s else None for s in after[2:]] == [SlotState.EMPTY] * 6


def test_arbiter_clears_the_group_of_an_exited_worker() -> None:
    server = Server()
    worker = started_worker(server)
    assert hooks._board is not None

    hooks.child_exit(server, worker)

    slot = hooks._board.read_slot(0)
    assert slot is not None
    assert (slot.pid, slot.state) == (0, SlotState.EMPTY)


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        (["127.0.0.1:8001"], "8001"),
        (["[::1]:8002", "127.0.0.1:9000"], "8002"),
        (["unix:/run/app/app.sock"], "app.sock"),
        ([], "gunicorn"),
    ],
)
def test_instance_is_named_by_its_port_or_socket(bind: list[str], expected: str) -> None:
    assert hooks.instance_name(bind) == expected


def test_requests_beyond_the_slots_are_counted_and_warned_about() -> None:
    server = Server(cfg=Cfg(threads=1), worker_class=SyncWorker)
    worker = started_worker(server)
    watched = Request()
    hooks.pre_request(worker, watched)

    for _ in range(101):  # the one slot is taken: none of these is watched
        hooks.pre_request(worker, Request(method="GET", path="/extra"))

    assert hooks._worker is not None
    assert hooks._worker.unwatched == 101
    warnings = [line for line in worker.log.lines if "not watched so far" in line]
    assert len(warnings) == 2  # the first and the 101st
    assert "1 request(s) not watched so far (GET /extra)" in warnings[0]
    assert "101 request(s)" in warnings[1]


def test_an_aborting_worker_names_the_requests_it_was_serving() -> None:
    server = Server(cfg=Cfg(threads=2), worker_class=ThreadWorker)
    worker = started_worker(server)
    hooks.pre_request(worker, Request(headers=[("X-REQUEST-ID", "rid-7")]))

    assert hooks._in_flight().startswith("POST /orders (rid=rid-7, 0.")
