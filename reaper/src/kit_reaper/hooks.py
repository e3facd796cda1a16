"""gunicorn server hooks that keep the instance's scoreboard.

In the app's gunicorn.conf.py:

    from kit_reaper import hooks as reaper_hooks
    from kit_reaper.hooks import *  # noqa: F403  on_starting, pre_fork, post_fork, ...

    reaper_hooks.configure(directory="/dev/shm/kit-reaper")   # optional, this is the default

A conf that has its own hook of one of these names calls ours from it:

    def pre_fork(server, worker):
        gc.freeze()
        reaper_hooks.pre_fork(server, worker)

Who writes what, and why no lock is needed:

- ``on_starting`` (arbiter): creates ``<instance>.<arbiter pid>.scoreboard`` with the
  arbiter's pid and start time, and room for ``workers + spare`` workers (spare defaults to
  ``workers``, enough for a HUP reload, which starts new workers before the old ones leave).
- ``pre_fork`` (arbiter, single-threaded): gives the worker about to be forked the lowest
  slot group no live worker holds (the arbiter knows every live worker: ``server.WORKERS``).
  The child inherits the number and the shared mapping through fork. A group is free again
  only after the arbiter has reaped its worker, so two workers never share a group.
- ``post_fork`` (worker): writes its pid and start time into its group, every slot idle.
- ``pre_request`` / ``post_request`` (worker, any thread): a request takes a free slot of its
  worker's group from an in-process list (``list.pop``/``append`` are atomic under the GIL),
  marks it busy with method, path and request id, and marks it idle when done. One slot per
  thread for gthread; one per worker for sync; up to 64 concurrent requests for async workers.
- ``child_exit`` (arbiter, after the worker is reaped): clears the group.

With PROMETHEUS_MULTIPROC_DIR set, the same hooks count every request and its duration
(`kit_reaper.appmetrics`): ``on_starting`` empties the directory, ``post_fork`` creates the
worker's metrics, ``pre_request``/``post_request`` record, ``child_exit`` folds the dead
worker's files into the archive.

Each slot so has a single writer at a time; the seqlock in `kit_reaper.scoreboard` lets the
reaper detect a read that overlapped a write.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from kit_reaper import appmetrics, procfs, scoreboard
from kit_reaper.config import DEFAULT_SCOREBOARD_DIR
from kit_reaper.scoreboard import Board, SlotState

__all__ = [
    "child_exit",
    "on_exit",
    "on_starting",
    "post_fork",
    "post_request",
    "pre_fork",
    "pre_request",
    "worker_abort",
    "worker_exit",
]

ASYNC_SLOTS_MAX = 64
_GROUP_ATTR = "kit_reaper_group"
_SLOT_ATTR = "kit_reaper_slot"
_REQUEST_ID = "X-REQUEST-ID"
_STARTED_ATTR = "kit_reaper_started"


class _Log(Protocol):
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None: ...
    def error(self, msg: str, *args: object) -> None: ...


# What the hooks use of gunicorn's objects (read-only, so any object that has them fits).
class _Cfg(Protocol):
    @property
    def workers(self) -> int: ...
    @property
    def threads(self) -> int: ...
    @property
    def worker_connections(self) -> int: ...
    @property
    def bind(self) -> Sequence[str]: ...


class _Server(Protocol):
    @property
    def cfg(self) -> _Cfg: ...
    @property
    def log(self) -> _Log: ...
    @property
    def WORKERS(self) -> Mapping[int, object]: ...
    @property
    def worker_class(self) -> type: ...


class _Worker(Protocol):
    @property
    def pid(self) -> int: ...
    @property
    def log(self) -> _Log: ...


class _Request(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def headers(self) -> Sequence[tuple[str, str]]: ...


@dataclass
class _Settings:
    directory: Path | None = None
    instance: str | None = None
    spare_workers: int | None = None


@dataclass
class _WorkerState:
    board: Board
    pid: int
    start_ticks: int
    free: list[int]  # free slot indexes of this worker's group
    first: int = 0  # the group's first slot index
    unwatched: int = 0  # requests that found every slot of the group taken


_settings = _Settings()
_board: Board | None = None  # the arbiter's mapping, inherited by every worker
_worker: _WorkerState | None = None  # set in a worker by post_fork
_requests: appmetrics.RequestMetrics | None = None  # set in a worker by post_fork
# The arbiter's dead workers whose metric files are not folded yet (child_exit).
_retired: list[int] = []
_retiring = False


def configure(
    *,
    directory: str | os.PathLike[str] | None = None,
    instance: str | None = None,
    spare_workers: int | None = None,
) -> None:
    """Settings for this gunicorn instance. Each falls back to an environment variable
    (KIT_REAPER_DIR, KIT_REAPER_INSTANCE), then to a default: /dev/shm/kit-reaper, the
    port (or socket name) of the first bind address, and as many spare groups as workers."""
    _settings.directory = None if directory is None else Path(directory)
    _settings.instance = instance
    _settings.spare_workers = spare_workers


def _directory() -> Path:
    if _settings.directory is not None:
        return _settings.directory
    return Path(os.environ.get("KIT_REAPER_DIR", str(DEFAULT_SCOREBOARD_DIR)))


def instance_name(bind: Sequence[str]) -> str:
    """`127.0.0.1:8001` -> `8001`, `unix:/run/app/app.sock` -> `app.sock`."""
    first = bind[0] if bind else "gunicorn"
    if first.startswith("unix:"):
        name = Path(first.removeprefix("unix:")).name
    else:
        host, _, port = first.rpartition(":")
        name = port if port.isdigit() and host else first
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "gunicorn"


def _instance(server: _Server) -> str:
    return (
        _settings.instance
        or os.environ.get("KIT_REAPER_INSTANCE")
        or instance_name(server.cfg.bind)
    )


def slots_per_worker(server: _Server) -> int:
    names = {cls.__name__ for cls in server.worker_class.__mro__}
    if "AsyncWorker" in names:
        return max(1, min(server.cfg.worker_connections, ASYNC_SLOTS_MAX))
    if "ThreadWorker" in names:
        return max(1, server.cfg.threads)
    return 1


def _remove_stale(directory: Path, instance: str) -> None:
    """Remove this instance's scoreboards left by arbiters that are gone."""
    for path in directory.glob(f"{instance}.*{scoreboard.SUFFIX}"):
        if scoreboard.instance_of(path) != instance:
            continue
        arbiter = path.name.removesuffix(scoreboard.SUFFIX).rpartition(".")[2]
        if arbiter.isdigit() and procfs.read_stat(int(arbiter)) is None:
            path.unlink(missing_ok=True)


def on_starting(server: _Server) -> None:
    global _board
    if _board is not None:
        return
    directory = _directory()
    instance = _instance(server)
    workers = max(1, server.cfg.workers)
    spare = workers if _settings.spare_workers is None else _settings.spare_workers
    pid = os.getpid()
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    _remove_stale(directory, instance)
    metrics = appmetrics.directory()
    if metrics is not None:
        appmetrics.reset(metrics)
    path = scoreboard.create(
        directory,
        instance=instance,
        arbiter_pid=pid,
        arbiter_start_ticks=procfs.self_start_ticks(),
        groups=workers + max(0, spare),
        slots_per_group=slots_per_worker(server),
    )
    _board = Board(path, writable=True)
    server.log.info(
        "kit_reaper: scoreboard %s (%d workers x %d slots)",
        path,
        _board.header.groups,
        _board.header.slots_per_group,
    )


def pre_fork(server: _Server, worker: object) -> None:
    if _board is None:
        on_starting(server)
    assert _board is not None
    held = {getattr(w, _GROUP_ATTR, None) for w in server.WORKERS.values()}
    for group in range(_board.header.groups):
        if group not in held:
            setattr(worker, _GROUP_ATTR, group)
            return
    server.log.warning(
        "kit_reaper: all %d scoreboard groups are held; this worker is not watched",
        _board.header.groups,
    )


def post_fork(server: _Server, worker: _Worker) -> None:
    global _worker, _requests
    if appmetrics.directory() is not None:
        _requests = appmetrics.RequestMetrics(_instance(server))
    group = getattr(worker, _GROUP_ATTR, None)
    if _board is None or group is None:
        server.log.warning(
            "kit_reaper: worker %s has no scoreboard slot (pre_fork not wired?)", worker.pid
        )
        return
    pid, start_ticks = os.getpid(), procfs.self_start_ticks()
    spg = _board.header.slots_per_group
    first = group * spg
    for index in range(first, first + spg):
        _board.write(index, pid=pid, state=SlotState.IDLE, start_ticks=start_ticks)
    # pop() takes from the end: lowest index first.
    _worker = _WorkerState(
        _board, pid, start_ticks, list(range(first + spg - 1, first - 1, -1)), first
    )


def _request_id(headers: Sequence[tuple[str, str]]) -> str:
    for name, value in headers:
        if name == _REQUEST_ID:
            return value
    return ""


def pre_request(worker: _Worker, req: _Request) -> None:
    if _requests is not None:
        setattr(req, _STARTED_ATTR, time.perf_counter())
        _requests.started()
    state = _worker
    if state is None:
        return
    try:
        index = state.free.pop()
    except IndexError:
        # More requests in flight than slots: this one is not watched. Said on the first
        # and every 100th, with the count, rather than dropped in silence.
        state.unwatched += 1
        if state.unwatched % 100 == 1:
            worker.log.warning(
                "kit_reaper: worker %s has more requests in flight than its %d scoreboard "
                "slots; %d request(s) not watched so far (%s %s)",
                state.pid, state.board.header.slots_per_group, state.unwatched,
                req.method, req.path,
            )  # fmt: skip
        return
    setattr(req, _SLOT_ATTR, index)
    state.board.write(
        index,
        pid=state.pid,
        state=SlotState.BUSY,
        start_ticks=state.start_ticks,
        request_start=time.monotonic(),
        method=req.method.encode("ascii", "replace"),
        path=req.path.encode("utf-8", "surrogateescape"),
        request_id=_request_id(req.headers).encode("utf-8", "surrogateescape"),
    )


def post_request(worker: _Worker, req: _Request, environ: object, resp: object) -> None:
    started = getattr(req, _STARTED_ATTR, None)
    if _requests is not None and started is not None:
        # No response: the app raised before answering, and gunicorn answered 500.
        status = getattr(resp, "status_code", None) or 500
        _requests.finished(req.method, environ, status, time.perf_counter() - started)
        delattr(req, _STARTED_ATTR)
    state = _worker
    index = getattr(req, _SLOT_ATTR, None)
    if state is None or index is None:
        return
    state.board.write(index, pid=state.pid, state=SlotState.IDLE, start_ticks=state.start_ticks)
    delattr(req, _SLOT_ATTR)
    state.free.append(index)


def _clear_group(worker: object) -> None:
    group = getattr(worker, _GROUP_ATTR, None)
    if _board is None or group is None:
        return
    spg = _board.header.slots_per_group
    for index in range(group * spg, (group + 1) * spg):
        _board.write(index, pid=0, state=SlotState.EMPTY, start_ticks=0)


def worker_exit(server: _Server, worker: _Worker) -> None:
    if os.getpid() != worker.pid:
        # gunicorn calls this in the arbiter for a worker that vanished (ESRCH).
        _clear_group(worker)
        return
    state = _worker
    if state is None:
        return
    # In the worker: give up the idle slots. Busy ones (a thread still running a request
    # during a graceful exit) stay visible to the reaper until the arbiter clears them.
    while True:
        try:
            index = state.free.pop()
        except IndexError:
            break
        state.board.write(index, pid=0, state=SlotState.EMPTY, start_ticks=0)


def child_exit(server: _Server, worker: object) -> None:
    global _retiring
    _clear_group(worker)
    metrics = appmetrics.directory()
    pid = getattr(worker, "pid", None)
    if metrics is None or not isinstance(pid, int):
        return
    _retired.append(pid)
    # gunicorn reaps in its SIGCHLD handler, which can interrupt this very loop: that call
    # only queues its pid, which the loop it interrupted folds.
    if _retiring:
        return
    _retiring = True
    try:
        while _retired:
            dead = _retired[0]
            try:
                appmetrics.retire(metrics, dead)
            except appmetrics.LockBusy:
                break  # the next worker's exit tries again; its files count meanwhile
            except OSError as e:
                server.log.warning("kit_reaper: worker %s's metrics not archived: %s", dead, e)
            _retired.remove(dead)
    finally:
        _retiring = False


def on_exit(server: _Server) -> None:
    global _board
    if _board is None:
        return
    if _board.header.arbiter_pid == os.getpid():
        _board.path.unlink(missing_ok=True)
    _board.close()
    _board = None


def _in_flight() -> str:
    """This worker's requests in flight, from its scoreboard slots: method, path, request id
    and age, or "no request"."""
    state = _worker
    if state is None:
        return "no watched request"
    now = time.monotonic()
    spg = state.board.header.slots_per_group
    requests = []
    for index in sorted(set(range(state.first, state.first + spg)) - set(state.free)):
        slot = state.board.read_slot(index)
        if slot is not None and slot.busy and slot.pid == state.pid:
            rid = slot.request_id or "-"
            requests.append(
                f"{slot.method} {slot.path} (rid={rid}, {now - slot.request_start:.1f} s)"
            )
    return ", ".join(requests) or "no request"


def worker_abort(worker: _Worker) -> None:
    """On SIGABRT (the reaper's deadline kill, or gunicorn's own timeout): every thread's
    Python stack to the error log, then the worker exits at once.

    gunicorn's own exit (sys.exit) would wait for the request threads of a gthread worker:
    the interpreter joins its thread pool, so the worker lived on, its accepted connections
    unanswered, until the reaper's SIGKILL. os._exit ends it now; the kernel closes its
    connections and HAProxy sees them end."""
    frames = sys._current_frames()
    stacks = [
        f"Thread {ident}:\n{''.join(traceback.format_stack(frame))}"
        for ident, frame in frames.items()
    ]
    worker.log.error(
        "kit_reaper: worker %s aborted serving %s; stacks:\n%s",
        os.getpid(), _in_flight(), "\n".join(stacks),
    )  # fmt: skip
    for handler in logging.getLogger("gunicorn.error").handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(1)
