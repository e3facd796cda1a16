"""Request metrics of gunicorn's workers, in prometheus_client's multiprocess mode.

Each gunicorn instance's unit sets PROMETHEUS_MULTIPROC_DIR to a directory of its own,
``<root>/<instance>`` (the kit: /dev/shm/kit-metrics/<port>). prometheus_client then keeps
every worker's samples in files named by the worker's pid there. The hooks record, for every
request (`RequestMetrics`):

- ``kit_app_requests_total{gunicorn_instance, route, method, status}``
- ``kit_app_request_duration_seconds{gunicorn_instance, route}`` (a histogram)
- ``kit_app_requests_in_flight{gunicorn_instance}``

``route`` is what the application put in the WSGI environ under ``kit.route`` (a route
template such as ``/items/<int:id>``, never the raw path, which is unbounded), or ``-``.
The app's own prometheus_client metrics land in the same files.

The reaper on the node serves the sum over every instance (`Collector`), so gunicorn opens
no port of its own for metrics.

A worker's files outlive it: its counters must keep counting. The arbiter folds a dead
worker's samples into one archive file per kind (`retire`): counters, histograms, summaries
and gauges in "sum" mode add up, "max", "min" and "mostrecent" gauges keep the largest,
smallest or latest; "all" gauges (a series per process) and live gauges go with it. So an
instance's directory holds its live workers' files plus one archive per kind, however often
workers recycle.
The fold and the reaper's reads take a lock on the directory, so a scrape never sees a
dead worker's samples twice or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

ENV = "PROMETHEUS_MULTIPROC_DIR"
ROUTE_KEY = "kit.route"
NO_ROUTE = "-"
LOCK = "lock"
# Longest wait for the directory's lock. The arbiter never waits long on the reaper (it
# must reap and fork), and a scrape never waits forever on an arbiter.
LOCK_WAIT_S = 1.0
# Seconds: from a cache hit to the reaper's default deadline.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_Sample = tuple[float, float]  # value, timestamp


def _sum(old: _Sample, new: _Sample) -> _Sample:
    return old[0] + new[0], max(old[1], new[1])


def _max(old: _Sample, new: _Sample) -> _Sample:
    return max(old, new)


def _min(old: _Sample, new: _Sample) -> _Sample:
    return min(old, new)


def _latest(old: _Sample, new: _Sample) -> _Sample:
    return new if new[1] >= old[1] else old


# How a dead worker's file of each kind (the name before _<pid>.db) joins the archive.
_FOLDS = {
    "counter": _sum,
    "histogram": _sum,
    "summary": _sum,
    "gauge_sum": _sum,
    "gauge_max": _max,
    "gauge_min": _min,
    "gauge_mostrecent": _latest,
}


def directory() -> Path | None:
    """This gunicorn instance's metrics directory, or None: no request metrics."""
    value = os.environ.get(ENV, "")
    return Path(value) if value else None


class LockBusy(Exception):
    """The directory's lock was not had within LOCK_WAIT_S."""


@contextlib.contextmanager
def locked(path: Path, exclusive: bool, wait: float = LOCK_WAIT_S) -> Iterator[None]:
    """The directory's lock: exclusive to change its files, shared to read them. Polled,
    never waited on in the kernel: a SIGCHLD handler in the arbiter that wanted the lock the
    interrupted code holds would otherwise wait for itself forever."""
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        end = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= end:
                    raise LockBusy(str(path / LOCK)) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(fd)


def reset(path: Path) -> None:
    """In the arbiter, before the first worker: start from empty (counters restart at zero,
    which Prometheus reads as a restart)."""
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    with contextlib.suppress(LockBusy), locked(path, exclusive=True, wait=5.0):
        pass  # a scrape in progress ends first; an old one stuck there does not hold us
    for old in path.glob("*.db"):
        old.unlink(missing_ok=True)


def retire(path: Path, pid: int) -> None:
    """In the arbiter, once worker `pid` is reaped: drop its live gauges, and fold its
    other files into the archive. Raises LockBusy when the lock stays taken: the caller
    tries again later (the files stay, and count, meanwhile)."""
    from prometheus_client import mmap_dict, multiprocess

    # prometheus_client's multiprocess internals carry no type hints.
    mark_process_dead: Any = multiprocess.mark_process_dead
    MmapedDict: Any = mmap_dict.MmapedDict

    mark_process_dead(pid, str(path))  # its live gauges
    with locked(path, exclusive=True):
        for kind, fold in _FOLDS.items():
            dead = path / f"{kind}_{pid}.db"
            if not dead.exists():
                continue
            archive_path = path / f"{kind}_archive.db"
            kept: dict[str, _Sample] = {}
            if archive_path.exists():
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(
                    str(archive_path)
                ):
                    kept[key] = (value, timestamp)
            archive = MmapedDict(str(archive_path))
            try:
                for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(dead)):
                    sample = (value, timestamp)
                    if key in kept:
                        sample = fold(kept[key], sample)
                    archive.write_value(key, *sample)
            finally:
                archive.close()
            dead.unlink()
        (path / f"gauge_all_{pid}.db").unlink(missing_ok=True)  # its own series, gone


class RequestMetrics:
    """A worker's request metrics; created in the worker, after the fork."""

    def __init__(self, instance: str) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        # Not in the default registry: nothing in the worker serves them; the files are read
        # by the reaper.
        self._requests = Counter(
            "kit_app_requests",
            "Requests answered, by route, method and status",
            ["gunicorn_instance", "route", "method", "status"],
            registry=None,
        )
        self._duration = Histogram(
            "kit_app_request_duration_seconds",
            "Time from the request's arrival in the worker to the end of its response",
            ["gunicorn_instance", "route"],
            buckets=BUCKETS,
            registry=None,
        )
        self._in_flight = Gauge(
            "kit_app_requests_in_flight",
            "Requests a worker is serving",
            ["gunicorn_instance"],
            multiprocess_mode="livesum",
            registry=None,
        ).labels(instance)
        self._instance = instance

    def started(self) -> None:
        self._in_flight.inc()

    def finished(self, method: str, environ: object, status: int, seconds: float) -> None:
        self._in_flight.dec()
        route = NO_ROUTE
        if isinstance(environ, Mapping):
            route = str(environ.get(ROUTE_KEY) or NO_ROUTE)
        method = method if method in _METHODS else "other"
        self._requests.labels(self._instance, route, method, str(status)).inc()
        self._duration.labels(self._instance, route).observe(seconds)


class Collector:
    """The reaper's view: the sum of every instance's files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        if not self.root.is_dir():
            return []
        instances = sorted(p for p in self.root.iterdir() if p.is_dir())
        with contextlib.ExitStack() as stack:
            for instance in instances:
                try:
                    stack.enter_context(locked(instance, exclusive=False))
                except (OSError, LockBusy):
                    continue  # not ours to lock, just removed, or held: read without it
            files = [str(f) for instance in instances for f in sorted(instance.glob("*.db"))]
            merge: Any = MultiProcessCollector.merge
            return list(merge(files, accumulate=True))
