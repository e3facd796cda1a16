"""The request metrics the hooks keep in prometheus_client's multiprocess mode, read the
way the reaper serves them: a real gunicorn, its workers recycling under max_requests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Gunicorn, in_background, wait_for
from prometheus_client import generate_latest

from kit_reaper import appmetrics, hooks
from kit_reaper.metrics import Metrics


def samples(root: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the reaper would serve for `root`, keyed by name and sorted labels."""
    metrics = Metrics()
    metrics.add_app_metrics(root)
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name.startswith(("kit_app_", "testapp_")):
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests_total(root: Path, route: str, status: str = "200") -> float:
    labels = (("gunicorn_instance", "test"), ("method", "GET"), ("route", route))
    key = ("kit_app_requests_total", tuple(sorted((*labels, ("status", status)))))
    return samples(root).get(key, 0.0)


def test_every_request_is_counted_across_recycled_workers(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    root = tmp_path / "metrics"
    server = start_gunicorn(workers=2, max_requests=5, metrics_dir=root / "test")
    pids = set()
    for _ in range(40):
        response = server.get("/pid")
        assert response.status == 200
        pids.add(response.pid)
    assert len(pids) >= 8, "workers did not recycle: max_requests not applied"

    wait_for("all 40 requests counted", lambda: requests_total(root, "/pid") == 40 or None)
    found = samples(root)
    count = (
        "kit_app_request_duration_seconds_count",
        (("gunicorn_instance", "test"), ("route", "/pid")),
    )
    assert found[count] == 40
    # The app's own metrics too: a summary adds up, a "max" gauge keeps the largest.
    assert found[("testapp_pid_seconds_count", ())] == 40
    assert found[("testapp_pid_latest", ())] == max(pids)
    # Dead workers' files are folded: the live workers' files and an archive per kind,
    # not a set per worker that ever lived.
    files = {p.name for p in (root / "test").glob("*.db")}
    archives = {f"{kind}_archive.db" for kind in ("counter", "histogram", "summary", "gauge_max")}
    assert archives <= files
    assert len(files) <= len(archives) + 5 * server.workers, sorted(files)


def test_route_status_and_in_flight(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    root = tmp_path / "metrics"
    server = start_gunicorn(workers=2, metrics_dir=root / "test")
    assert server.get("/nowhere").status == 404
    assert server.get("/boom").status == 500
    wait_for("the 404 counted", lambda: requests_total(root, "/unknown", "404") == 1 or None)
    wait_for("the 500 counted", lambda: requests_total(root, "/boom", "500") == 1 or None)

    in_flight = ("kit_app_requests_in_flight", (("gunicorn_instance", "test"),))
    slow = in_background(server, "/sleep?s=2")
    wait_for("one request in flight", lambda: samples(root).get(in_flight) == 1 or None)
    slow.join()
    wait_for("none in flight", lambda: samples(root).get(in_flight) == 0 or None)


def test_a_restarted_instance_starts_from_zero(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    root = tmp_path / "metrics"
    (root / "test").mkdir(parents=True)
    (root / "test" / "counter_12345.db").write_bytes(b"stale")
    server = start_gunicorn(workers=1, metrics_dir=root / "test")
    assert not (root / "test" / "counter_12345.db").exists()
    server.get("/pid")
    wait_for("the request counted", lambda: requests_total(root, "/pid") == 1 or None)
    metrics = Metrics()
    metrics.add_app_metrics(root)
    assert b'kit_app_requests_total{gunicorn_instance="test"' in generate_latest(metrics.registry)


def test_no_directory_serves_nothing(tmp_path: Path) -> None:
    assert samples(tmp_path / "absent") == {}


class _Log:
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None:
        raise AssertionError(msg % args)

    def error(self, msg: str, *args: object) -> None: ...


class _Server:
    """The arbiter, as child_exit uses it: its log (a warning fails the test)."""

    log = _Log()


class _Dead:
    def __init__(self, pid: int) -> None:
        self.pid = pid


def dead_worker_file(directory: Path, pid: int, value: float) -> None:
    from prometheus_client import mmap_dict

    key = mmap_dict.mmap_key("kit_app_requests", "kit_app_requests_total", ["x"], ["y"], "h")
    mmaped: Any = mmap_dict.MmapedDict  # prometheus_client's internals carry no types
    values = mmaped(str(directory / f"counter_{pid}.db"))
    values.write_value(key, value, 0.0)
    values.close()


def total(directory: Path) -> float:
    found = samples(directory.parent)
    return sum(v for (name, _), v in found.items() if name == "kit_app_requests_total")


def test_a_worker_reaped_while_another_is_folded_is_folded_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gunicorn reaps workers in its SIGCHLD handler, which may interrupt child_exit while
    it holds the directory's lock: the nested call must not wait for that lock (it would
    wait for itself forever, the arbiter with it); its worker is folded all the same."""
    directory = tmp_path / "metrics" / "8001"
    directory.mkdir(parents=True)
    monkeypatch.setenv(appmetrics.ENV, str(directory))
    for pid, value in ((1001, 3), (1002, 4)):
        dead_worker_file(directory, pid, value)
    real_retire = appmetrics.retire

    def retire_interrupted(path: Path, pid: int) -> None:
        if pid == 1001:
            # As if SIGCHLD arrived here, the lock held: the handler reaps worker 1002.
            with appmetrics.locked(path, exclusive=True):
                hooks.child_exit(_Server(), _Dead(1002))  # type: ignore[arg-type]
        real_retire(path, pid)

    monkeypatch.setattr(appmetrics, "retire", retire_interrupted)
    hooks.child_exit(_Server(), _Dead(1001))  # type: ignore[arg-type]
    assert sorted(p.name for p in directory.glob("*.db")) == ["counter_archive.db"]
    assert total(directory) == 7


def test_a_held_lock_defers_the_fold_without_losing_a_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics" / "8001"
    directory.mkdir(parents=True)
    monkeypatch.setenv(appmetrics.ENV, str(directory))
    monkeypatch.setattr(appmetrics, "LOCK_WAIT_S", 0.1)
    dead_worker_file(directory, 2001, 5)
    with appmetrics.locked(directory, exclusive=False, wait=0):  # a scrape that hangs
        hooks.child_exit(_Server(), _Dead(2001))  # type: ignore[arg-type]
        assert (directory / "counter_2001.db").exists()  # not folded, still counted
    assert total(directory) == 5
    dead_worker_file(directory, 2002, 1)
    hooks.child_exit(_Server(), _Dead(2002))  # type: ignore[arg-type]  # folds both
    assert sorted(p.name for p in directory.glob("*.db")) == ["counter_archive.db"]
    assert total(directory) == 6
