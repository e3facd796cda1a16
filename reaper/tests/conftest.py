"""Fixtures: a real gunicorn instance wired with the hooks, and the reaper running on it."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from kit_reaper import procfs, scoreboard
from kit_reaper.config import Config, DeadlineConfig, MemoryConfig
from kit_reaper.reaper import Event, Reaper
from kit_reaper.scoreboard import Board, Slot, SlotState

TESTS = Path(__file__).parent
INSTANCE = "test"
# Generous: only a bound on how long a test waits for something that should happen.
PATIENCE_S = 30.0

T = TypeVar("T")

CONF = """\
from kit_reaper import hooks as reaper_hooks
from kit_reaper.hooks import *  # noqa: F403

reaper_hooks.configure(directory={directory!r}, instance={instance!r})

bind = "127.0.0.1:{port}"
wsgi_app = "testapp:app"
pythonpath = {tests!r}
workers = {workers}
worker_class = {worker_class!r}
threads = {threads}
timeout = 300
graceful_timeout = 10
loglevel = "info"
max_requests = {max_requests}
"""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = PATIENCE_S) -> T:
    """Poll `probe` until it returns something other than None (or False)."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    found = procfs.read_stat(pid)
    return found is not None and found.state not in ("Z", "X")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Response:
    status: int
    body: str
    pid: int


@dataclass
class Gunicorn:
    directory: Path
    port: int
    workers: int
    process: subprocess.Popen[bytes]
    log: Path

    def boards(self) -> list[Board]:
        return [Board(p) for p in sorted(self.directory.glob("*.scoreboard"))]

    def slots(self) -> list[Slot]:
        found = []
        for board in self.boards():
            found += [s for s in board.read_slots() if s is not None and s.pid > 0]
            board.close()
        return found

    def worker_pids(self) -> set[int]:
        return {s.pid for s in self.slots() if alive(s.pid)}

    def busy_slot(self, request_id: str) -> Slot | None:
        return next((s for s in self.slots() if s.busy and s.request_id == request_id), None)

    def get(self, path: str, request_id: str | None = None, timeout: float = 30) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"X-Request-ID": request_id} if request_id else {})
            resp = conn.getresponse()
            body = resp.read().decode()
            return Response(resp.status, body, int(resp.getheader("X-Worker-Pid", "0")))
        finally:
            conn.close()


@dataclass
class Background:
    """A request running in a thread: its response, or the exception it raised."""

    thread: threading.Thread
    response: Response | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def cut_short(self) -> bool:
        """The request ended without the app's answer, and not by the client's timeout:
        a 500 from gunicorn itself (a sync worker aborting), or a dropped connection."""
        if self.response is not None:
            return self.response.status == 500 and self.response.pid == 0
        return isinstance(self.error, ConnectionError | http.client.IncompleteRead)

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "request thread still running"


def in_background(server: Gunicorn, path: str, request_id: str | None = None) -> Background:
    bg: Background

    def run() -> None:
        try:
            bg.response = server.get(path, request_id)
        except BaseException as e:
            bg.error = e
        finally:
            bg.done.set()

    bg = Background(threading.Thread(target=run, daemon=True))
    bg.thread.start()
    return bg


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(
        worker_class: str = "sync",
        workers: int = 2,
        threads: int = 1,
        max_requests: int = 0,
        metrics_dir: Path | None = None,
    ) -> Gunicorn:
        directory = tmp_path / "scoreboard"
        port = free_port()
        conf = tmp_path / "gunicorn.conf.py"
        conf.write_text(
            CONF.format(
                directory=str(directory),
                instance=INSTANCE,
                port=port,
                tests=str(TESTS),
                workers=workers,
                worker_class=worker_class,
                threads=threads,
                max_requests=max_requests,
            )
        )
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        if metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        log = tmp_path / "gunicorn.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env=env,
            )
        server = Gunicorn(directory, port, workers, process, log)
        started.append(server)

        def ready() -> bool:
            assert process.poll() is None, f"gunicorn exited:\n{log.read_text()}"
            try:
                server.get("/healthz", timeout=2)
            except OSError:
                return False
            return len(server.worker_pids()) == workers

        wait_for("gunicorn to serve with every worker on the scoreboard", ready)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(15)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def reaper_config(
    directory: Path, *, limit_mb: float = 0.0, recycle_budget: int = 1, dry_run: bool = False
) -> Config:
    """Deadline 2 s (30 s under /long/), scans every 0.2 s; memory recycling off unless
    `limit_mb` is set, then after 2 samples over it."""
    return Config(
        scoreboard_dir=directory,
        scan_interval_s=0.2,
        dry_run=dry_run,
        stacks=False,
        deadline=DeadlineConfig(
            default_s=2.0, methods={}, paths={"/long/": 30.0}, abort_grace_s=1.0
        ),
        memory=MemoryConfig(
            limit_mb=limit_mb, samples=2, recycle_budget=recycle_budget, drain_s=10.0
        ),
    )


@dataclass
class RunningReaper:
    reaper: Reaper
    events: list[Event]

    def find(self, **fields: object) -> Event | None:
        for event in list(self.events):
            if all(event.get(k) == v for k, v in fields.items()):
                return event
        return None


@contextmanager
def running_reaper(config: Config, py_spy: str | None = None) -> Iterator[RunningReaper]:
    events: list[Event] = []
    reaper = Reaper(config, emit=events.append)
    if py_spy is not None:
        reaper._py_spy = py_spy
    stop = threading.Event()
    thread = threading.Thread(target=reaper.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield RunningReaper(reaper, events)
    finally:
        stop.set()
        thread.join(10)


# -- hand-written scoreboards of real processes (no gunicorn) ---------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process (a child of this test process)."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def start_ticks(pid: int) -> int:
    found = procfs.read_stat(pid)
    assert found is not None
    return found.start_ticks


def board_claiming(
    directory: Path,
    *,
    arbiter_pid: int,
    pid: int,
    slot_start_ticks: int,
    age_s: float = 3600.0,
    state: SlotState = SlotState.BUSY,
) -> None:
    """A scoreboard of a live 'arbiter' whose one slot claims `pid`: busy for an hour (or
    `age_s`, or idle), on a worker with a start time of `slot_start_ticks`."""
    path = scoreboard.create(
        directory,
        instance="forged",
        arbiter_pid=arbiter_pid,
        arbiter_start_ticks=start_ticks(arbiter_pid),
        groups=1,
        slots_per_group=1,
    )
    board = Board(path, writable=True)
    board.write(
        0,
        pid=pid,
        state=state,
        start_ticks=slot_start_ticks,
        request_start=time.monotonic() - age_s,
        method=b"GET",
        path=b"/stuck",
        request_id=b"forged",
    )
    board.close()


def scan_in_a_thread(reaper: Reaper, scans: int = 10) -> None:
    """`scans` real scans, each bounded in time: an entry that blocks the reaper fails here
    instead of hanging the tests."""

    def scan_repeatedly() -> None:
        for _ in range(scans):
            reaper.scan()
            time.sleep(0.02)

    thread = threading.Thread(target=scan_repeatedly, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the reaper's scan blocked"


def stuck_worker(directory: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """A board of this process (the arbiter) on which `sleeper` is an hour into a request."""
    board_claiming(
        directory,
        arbiter_pid=os.getpid(),
        pid=sleeper.pid,
        slot_start_ticks=start_ticks(sleeper.pid),
    )
